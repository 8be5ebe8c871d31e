package org.safeflag.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.SubscriptionTriggeringProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.RequestValidatingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import ca.uhn.fhir.validation.IInstanceValidatorModule;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import java.util.List;
import org.springframework.beans.factory.annotation.Qualifier;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * HAPI's RESTful server on {@code /fhir/*}: the generated R4 resource providers, the system provider
 * (transaction/batch, history, $meta...), the JPA CapabilityStatement, database-backed paging,
 * ValueSet $expand/$validate-code and $trigger-subscription. Request validation is off unless
 * {@code safeflag.hapi.validate-requests=true}; {@code $validate} works either way.
 */
@Configuration
public class FhirServletConfig {

	@Bean
	public RestfulServer restfulServer(
			FhirContext fhirContext,
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider,
			ValueSetOperationProvider valueSetOperationProvider,
			SubscriptionTriggeringProvider subscriptionTriggeringProvider,
			@Qualifier("myInstanceValidator") IInstanceValidatorModule instanceValidator,
			@Value("${safeflag.hapi.validate-requests:false}") boolean validateRequests,
			@Value("${safeflag.hapi.default-page-size:20}") int defaultPageSize,
			@Value("${safeflag.hapi.max-page-size:500}") int maxPageSize) {
		// No narratives: they cost CPU on every write and SafeFlag's comparisons never read them.
		fhirContext.setNarrativeGenerator(new NullNarrativeGenerator());

		RestfulServer server = new RestfulServer(fhirContext);
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		server.registerProvider(valueSetOperationProvider);
		server.registerProvider(subscriptionTriggeringProvider);

		JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport);
		capabilities.setImplementationDescription("SafeFlag HAPI FHIR R4 sandbox");
		server.setServerConformanceProvider(capabilities);

		pagingProvider.setDefaultPageSize(defaultPageSize);
		pagingProvider.setMaximumPageSize(maxPageSize);
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);

		if (validateRequests) {
			RequestValidatingInterceptor validating = new RequestValidatingInterceptor();
			validating.setFailOnSeverity(ResultSeverityEnum.ERROR);
			validating.setValidatorModules(List.of(instanceValidator));
			server.registerInterceptor(validating);
		}
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> registration = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		registration.setName("fhir");
		// Initialise at startup so the first request (the readiness poll of /fhir/metadata) is not the one
		// that pays for scanning the providers.
		registration.setLoadOnStartup(1);
		return registration;
	}
}
