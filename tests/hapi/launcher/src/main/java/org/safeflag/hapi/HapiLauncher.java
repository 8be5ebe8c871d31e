package org.safeflag.hapi;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * Entry point of SafeFlag's HAPI FHIR JPA R4 sandbox (issue 7; shared/docs/hapi-sandbox.md).
 *
 * <p>The server itself is HAPI FHIR 8.8.0's published JPA configuration, wired by
 * {@link HapiJpaServerConfig} (storage, subscriptions, batch jobs) and {@link FhirServletConfig}
 * (the RESTful server on {@code /fhir/*}). Spring Boot supplies Tomcat, the DataSource (in-memory H2
 * unless {@code spring.datasource.url} says otherwise) and the command line:
 * {@code java -Xmx2g -jar hapi-launcher.jar --server.port=8090 --server.address=127.0.0.1}.
 */
@SpringBootApplication(
		// HAPI builds its own entity manager factory and JPA repositories (HapiJpaServerConfig); Boot's JPA
		// auto-configuration would build a second, conflicting one. The other exclusions are libraries HAPI
		// pulls in transitively (Thymeleaf for narratives, the Elasticsearch client for Hibernate Search,
		// Quartz) whose auto-configuration the sandbox does not use.
		excludeName = {
			"org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration",
			"org.springframework.boot.autoconfigure.data.jpa.JpaRepositoriesAutoConfiguration",
			"org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration",
			"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration",
			"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration",
			"org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration",
			"org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration"
		})
public class HapiLauncher {

	public static void main(String[] args) {
		SpringApplication.run(HapiLauncher.class, args);
	}
}
