package org.safeflag.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.parser.DataFormatException;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Offline FHIR R4 profile validator for {@code make validate-profiles} (issue 7).
 *
 * <p>Usage: {@code java -Dloader.main=org.safeflag.hapi.ValidateProfiles -jar hapi-launcher.jar DIR|FILE...}
 *
 * <p>Every {@code *.json} file under the arguments is read. StructureDefinitions, CodeSystems and ValueSets
 * are loaded into a {@link PrePopulatedValidationSupport}; SearchParameters are skipped (the validator has
 * no use for them). Every other resource is an example: it is validated with HAPI's
 * {@link FhirInstanceValidator} (the HL7 validator core) against the bundled R4 core definitions and
 * against each profile in its {@code meta.profile}. Terminology is checked in memory only, never against
 * a terminology server. Files that are not JSON FHIR resources count as errors. Each issue (warning and
 * above) is printed; the exit code is 1 when any error was found, 2 on misuse. One offline limitation is
 * reported as a warning instead of an error: R5 cross-version extensions, see
 * {@link #isCrossVersionExtensionOffline}.
 * See https://hapifhir.io/hapi-fhir/docs/validation/validation_support_modules.html
 */
public final class ValidateProfiles {

	private static final Set<String> LOADED_TYPES = Set.of("StructureDefinition", "CodeSystem", "ValueSet");
	private static final Set<String> SKIPPED_TYPES = Set.of("SearchParameter");
	private static final ObjectMapper JSON = new ObjectMapper();
	private static final Pattern XVER_EXTENSION = Pattern.compile(
			"'http://hl7\\.org/fhir/(1\\.0|3\\.0|4\\.0|4\\.3|5\\.0|6\\.0)/StructureDefinition/extension-[^']+'");

	private final FhirContext myContext;
	private final PrePopulatedValidationSupport myConformance;
	private final PrintStream myOut;
	private int myErrors;
	private int myWarnings;

	private ValidateProfiles(PrintStream out) {
		myContext = FhirContext.forR4Cached();
		myConformance = new PrePopulatedValidationSupport(myContext);
		myOut = out;
	}

	public static void main(String[] args) {
		// Before the first logger exists: the server's logback.xml would interleave INFO lines with the report.
		System.setProperty("logback.configurationFile", "logback-cli.xml");
		if (args.length == 0) {
			System.err.println("usage: ValidateProfiles DIR_OR_FILE... (validates *.json examples against meta.profile)");
			System.exit(2);
		}
		System.exit(new ValidateProfiles(System.out).run(args));
	}

	private int run(String[] args) {
		List<Path> files = new ArrayList<>();
		for (String arg : args) {
			Path path = Path.of(arg);
			if (!Files.exists(path)) {
				System.err.println("ValidateProfiles: " + arg + ": no such file or directory");
				return 2;
			}
			files.addAll(jsonFiles(path));
		}

		// First pass: load the conformance resources, so every example sees all of them.
		List<Candidate> toCheck = new ArrayList<>();
		int loaded = 0;
		for (Path file : files) {
			Candidate candidate = read(file);
			if (candidate.problem() == null && LOADED_TYPES.contains(candidate.type())) {
				try {
					myConformance.addResource(myContext.newJsonParser().parseResource(candidate.text()));
					loaded++;
					continue;
				} catch (DataFormatException e) {
					candidate = candidate.withProblem("cannot load as an R4 " + candidate.type() + ": " + e.getMessage());
				}
			}
			if (candidate.problem() != null || !SKIPPED_TYPES.contains(candidate.type())) {
				toCheck.add(candidate);
			}
		}
		myOut.println("Loaded " + loaded + " conformance resources; checking " + toCheck.size() + " files");

		FhirValidator validator = newValidator();
		for (Candidate candidate : toCheck) {
			if (candidate.problem() != null) {
				myErrors++;
				myOut.println("FAIL " + candidate.file() + ": " + candidate.problem());
			} else {
				validate(validator, candidate);
			}
		}
		myOut.println(String.format("%d files checked: %d errors, %d warnings", toCheck.size(), myErrors, myWarnings));
		return myErrors > 0 ? 1 : 0;
	}

	/** The chain the brief and HAPI's JPA server use, minus anything that would reach the network. */
	private FhirValidator newValidator() {
		ValidationSupportChain chain = new ValidationSupportChain(
				new DefaultProfileValidationSupport(myContext),
				myConformance,
				new SnapshotGeneratingValidationSupport(myContext),
				new InMemoryTerminologyServerValidationSupport(myContext),
				new CommonCodeSystemsTerminologyService(myContext));
		FhirInstanceValidator module = new FhirInstanceValidator(chain);
		// A meta.profile we cannot resolve is a broken example, not something to skip with a warning.
		module.setErrorForUnknownProfiles(true);
		return myContext.newValidator().registerValidatorModule(module);
	}

	/**
	 * The validator checks the resource against core R4 and every profile in its meta.profile by itself
	 * (naming them again in ValidationOptions would report each problem twice). It gets the file's own
	 * text, so whatever a model parser would reject or drop (unknown elements, bad codes) is reported.
	 */
	private void validate(FhirValidator validator, Candidate example) {
		ValidationResult result = validator.validateWithResult(example.text());
		List<SingleValidationMessage> issues = result.getMessages().stream()
				.filter(m -> m.getSeverity().ordinal() >= ResultSeverityEnum.WARNING.ordinal())
				.toList();
		String against = example.profiles().isEmpty()
				? "core R4 only (no meta.profile)"
				: String.join(", ", example.profiles());
		long errors = issues.stream()
				.filter(m -> isError(m) && !isCrossVersionExtensionOffline(m))
				.count();
		myOut.println((errors > 0 ? "FAIL " : "OK   ") + example.file() + " against " + against);
		for (SingleValidationMessage issue : issues) {
			String severity = issue.getSeverity().getCode();
			String message = issue.getMessage();
			if (isCrossVersionExtensionOffline(issue)) {
				severity = ResultSeverityEnum.WARNING.getCode();
				message += " - not checked: cross-version extension definitions come from the FHIR package"
						+ " registry, which an offline run cannot reach";
			}
			if (severity.equals(ResultSeverityEnum.ERROR.getCode()) || severity.equals("fatal")) {
				myErrors++;
			} else {
				myWarnings++;
			}
			String where = issue.getLocationString() != null ? issue.getLocationString() : example.type();
			myOut.println(String.format("  %-7s %s: %s", severity, where, message));
		}
	}

	private static boolean isError(SingleValidationMessage message) {
		return message.getSeverity().ordinal() >= ResultSeverityEnum.ERROR.ordinal();
	}

	/**
	 * R4 representations of R5 artefacts (the subscriptions backport's SubscriptionTopic as Basic) use
	 * cross-version extensions, http://hl7.org/fhir/5.0/StructureDefinition/extension-...; the validator can
	 * only resolve them from the xver packages of the FHIR package registry, so offline it calls every such
	 * URL "invalid Version". Only that case, for a real FHIR version, becomes a warning.
	 * https://hl7.org/fhir/R5/versions.html#extensions
	 */
	private static boolean isCrossVersionExtensionOffline(SingleValidationMessage message) {
		return "Extension_EXT_Version_Invalid".equals(message.getMessageId())
				&& XVER_EXTENSION.matcher(message.getMessage()).find();
	}

	/** resourceType and meta.profile from plain JSON: a model parser would stop at the first bad value. */
	private static Candidate read(Path file) {
		String text;
		try {
			text = Files.readString(file, StandardCharsets.UTF_8);
		} catch (IOException e) {
			return new Candidate(file, "", "", List.of(), "cannot read: " + e.getMessage());
		}
		JsonNode json;
		try {
			json = JSON.readTree(text);
		} catch (JsonProcessingException e) {
			return new Candidate(file, text, "", List.of(), "not JSON: " + e.getOriginalMessage());
		}
		JsonNode type = json == null ? null : json.get("resourceType");
		if (type == null || !type.isTextual()) {
			return new Candidate(file, text, "", List.of(), "not a FHIR resource (no resourceType)");
		}
		List<String> profiles = new ArrayList<>();
		json.path("meta").path("profile").forEach(p -> profiles.add(p.asText()));
		return new Candidate(file, text, type.asText(), profiles, null);
	}

	private static List<Path> jsonFiles(Path root) {
		if (Files.isRegularFile(root)) {
			return List.of(root);
		}
		try (Stream<Path> walk = Files.walk(root)) {
			return walk.filter(p -> Files.isRegularFile(p) && p.toString().endsWith(".json"))
					.sorted()
					.toList();
		} catch (IOException e) {
			throw new IllegalStateException("cannot list " + root, e);
		}
	}

	private record Candidate(Path file, String text, String type, List<String> profiles, String problem) {
		Candidate withProblem(String theProblem) {
			return new Candidate(file, text, type, profiles, theProblem);
		}
	}
}
