package org.safeflag.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.api.MethodOutcome;
import ca.uhn.fhir.rest.client.apache.GZipContentInterceptor;
import ca.uhn.fhir.rest.client.api.IGenericClient;
import ca.uhn.fhir.rest.client.api.ServerValidationModeEnum;
import ca.uhn.fhir.rest.client.interceptor.BearerTokenAuthInterceptor;
import org.hl7.fhir.instance.model.api.IIdType;
import org.hl7.fhir.r4.model.Organization;

/**
 * HAPI FHIR's generic client ({@link IGenericClient}) driving a FHIR server as an integrator's Java code
 * would: create, update, JSON Patch and read an Organization, then read it again with
 * {@code If-None-Match} (304 gives {@code null}).
 *
 * <p>Usage: {@code java -Dloader.main=org.safeflag.hapi.ClientRun -jar hapi-launcher.jar BASE TOKEN [gzip]}.
 * {@code gzip} registers HAPI's {@link GZipContentInterceptor}, which compresses every request body.
 *
 * <p>Prints one line per step, {@code <step> <id the client got>} ({@code null} when the client found no
 * id): the client takes a write's id from the {@code Location}/{@code Content-Location} header only.
 */
public final class ClientRun {
    private ClientRun() {}

    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: ClientRun BASE TOKEN [gzip]");
            System.exit(2);
        }
        FhirContext ctx = FhirContext.forR4();
        ctx.getRestfulClientFactory().setServerValidationMode(ServerValidationModeEnum.NEVER);
        IGenericClient client = ctx.newRestfulGenericClient(args[0]);
        client.registerInterceptor(new BearerTokenAuthInterceptor(args[1]));
        if (args.length > 2 && args[2].equals("gzip")) {
            client.registerInterceptor(new GZipContentInterceptor());
        }

        Organization org = new Organization();
        org.setName("HAPI generic client");
        MethodOutcome created = client.create().resource(org).execute();
        print("create", created.getId());
        String id = created.getId().getIdPart();

        Organization renamed = new Organization();
        renamed.setId("Organization/" + id);
        renamed.setName("HAPI generic client, renamed");
        MethodOutcome updated = client.update().resource(renamed).execute();
        print("update", updated.getId());

        MethodOutcome patched = client.patch()
                .withBody("[{\"op\": \"replace\", \"path\": \"/name\", \"value\": \"HAPI generic client, patched\"}]")
                .withId("Organization/" + id)
                .execute();
        print("patch", patched.getId());

        Organization read = client.read().resource(Organization.class).withId(id).execute();
        print("read", read.getIdElement());
        System.out.println("name " + read.getName());

        Organization again = client.read().resource(Organization.class).withId(id)
                .ifVersionMatches(read.getIdElement().getVersionIdPart()).returnNull().execute();
        System.out.println("not-modified " + (again == null));
    }

    private static void print(String step, IIdType id) {
        System.out.println(step + " " + (id == null || id.isEmpty() ? "null" : id.getValue()));
    }
}
