package org.safeflag.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.IDaoRegistry;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.jpa.topic.SubscriptionTopicConfig;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import jakarta.persistence.EntityManagerFactory;
import java.util.HashMap;
import java.util.Map;
import javax.sql.DataSource;
import org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy;
import org.hibernate.cfg.AvailableSettings;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;
import org.springframework.transaction.annotation.EnableTransactionManagement;

/**
 * HAPI FHIR JPA R4 storage, subscriptions and batch jobs, wired from HAPI's published Spring configuration.
 *
 * <p>HAPI's config classes expect the application to supply the settings beans, the entity manager
 * factory and the transaction manager; everything else (DAOs, resource providers, search, terminology,
 * validation support, subscription matching and delivery) comes from the imported classes. See
 * https://hapifhir.io/hapi-fhir/docs/server_jpa/get_started.html and the configuration of
 * hapi-fhir-jpaserver-starter, which this re-creates without its optional modules (CR, MDM, IPS, UI).
 */
@Configuration
@EnableTransactionManagement
@Import({
	JpaR4Config.class,
	// Topic-based (R4 backport: topics as Basic) subscriptions are accepted without it but never fire
	// (hapi-sandbox.md); tests/hapi/test_subscription_topic.py proves one is activated and delivers.
	SubscriptionTopicConfig.class,
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	ThreadPoolFactoryConfig.class
})
public class HapiJpaServerConfig {

	private static final Logger ourLog = LoggerFactory.getLogger(HapiJpaServerConfig.class);

	@Bean
	public JpaStorageSettings jpaStorageSettings(
			@Value("${safeflag.hapi.allow-external-references:true}") boolean allowExternalReferences,
			@Value("${safeflag.hapi.reuse-cached-search-results-millis:0}") long reuseCachedSearchMillis) {
		JpaStorageSettings settings = new JpaStorageSettings();
		// SafeFlag's resources carry absolute references (referral copies point at the sending system);
		// HAPI rejects those on write unless external references are allowed.
		settings.setAllowExternalReferences(allowExternalReferences);
		// HAPI's default replays an identical search from a 60 s cache, which would make tests and
		// benchmarks see stale or unfairly cheap results. Zero (the sandbox default) turns it off.
		settings.setReuseCachedSearchResultsForMillis(reuseCachedSearchMillis > 0 ? reuseCachedSearchMillis : null);
		// Referential integrity on write stays on, as in HAPI's default: a Flag's subject must exist.
		settings.setEnforceReferentialIntegrityOnWrite(true);
		settings.setAllowMultipleDelete(true);
		settings.setExpungeEnabled(true);
		return settings;
	}

	@Bean
	public SubscriptionSettings subscriptionSettings(
			@Value("${safeflag.hapi.subscription-interval-ms:0}") long submissionIntervalMs) {
		SubscriptionSettings settings = new SubscriptionSettings();
		// REST-hook is the only channel the sandbox delivers on (ED-on-HAPI flow, issue 7).
		settings.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		// HAPI >= 6.10 queues changes and matches them in batches every 5 s; keep HAPI's default unless
		// a caller asks otherwise, so measured latencies are the ones integrators see.
		if (submissionIntervalMs > 0) {
			settings.setSubscriptionIntervalInMs(submissionIntervalMs);
		}
		return settings;
	}

	/*
	 * What HAPI's HapiJpaConfig provides, minus its FulltextSearchSvcImpl: with Hibernate Search off, that
	 * bean's mere presence makes HAPI expand database-stored ValueSets through Hibernate Search, and
	 * ValueSet/$expand fails with HSEARCH800001 "Hibernate Search was not initialized". Every consumer
	 * takes IFulltextSearchSvc as optional, so leaving it out selects HAPI's plain database paths.
	 */

	@Bean
	public DatabaseBackedPagingProvider databaseBackedPagingProvider() {
		return new DatabaseBackedPagingProvider();
	}

	@Bean
	public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
		return new StaleSearchDeletingSvcImpl();
	}

	@Bean
	public IResourceSupportedSvc resourceSupportedSvc(IDaoRegistry daoRegistry) {
		return new DaoRegistryResourceSupportedSvc(daoRegistry);
	}

	@Bean(name = "myResourceCountsCache")
	public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
		return ResourceCountCacheUtil.newResourceCountCache(systemDao);
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	/** HAPI's subscription processor needs an email sender bean even when email delivery is off. */
	@Bean
	public IEmailSender emailSender() {
		return theDetails -> ourLog.warn("Email subscriptions are not enabled in the SafeFlag HAPI sandbox");
	}

	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource,
			@Value("${spring.datasource.url}") String jdbcUrl) {
		LocalContainerEntityManagerFactoryBean factory =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		factory.setPersistenceUnitName("HAPI_PU");
		factory.setDataSource(dataSource);
		factory.setJpaPropertyMap(jpaProperties(jdbcUrl));
		return factory;
	}

	@Primary
	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	/**
	 * Hibernate settings as hapi-fhir-jpaserver-starter uses them. HAPI needs its own dialects (they
	 * register HAPI's sequence generator), and JpaConfig's HibernatePropertiesProvider reads
	 * {@code hibernate.dialect} back from this map, so it must be explicit.
	 */
	static Map<String, Object> jpaProperties(String jdbcUrl) {
		boolean postgres = jdbcUrl.startsWith("jdbc:postgresql:");
		Map<String, Object> props = new HashMap<>();
		props.put(AvailableSettings.DIALECT,
				postgres ? HapiFhirPostgresDialect.class.getName() : HapiFhirH2Dialect.class.getName());
		// An empty in-memory H2 (or a fresh PostgreSQL database) gets HAPI's schema from the entity model.
		props.put(AvailableSettings.HBM2DDL_AUTO, "update");
		props.put(AvailableSettings.SCANNER, "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		props.put(AvailableSettings.IMPLICIT_NAMING_STRATEGY, SpringImplicitNamingStrategy.class.getName());
		props.put(AvailableSettings.PHYSICAL_NAMING_STRATEGY, CamelCaseToUnderscoresNamingStrategy.class.getName());
		props.put(AvailableSettings.STATEMENT_BATCH_SIZE, "20");
		props.put(AvailableSettings.USE_QUERY_CACHE, "false");
		props.put(AvailableSettings.USE_SECOND_LEVEL_CACHE, "false");
		props.put(AvailableSettings.USE_STRUCTURED_CACHE, "false");
		props.put(AvailableSettings.USE_MINIMAL_PUTS, "false");
		props.put(AvailableSettings.SHOW_SQL, "false");
		props.put(AvailableSettings.FORMAT_SQL, "false");
		// No Lucene/Elasticsearch: searches run on the database indexes only.
		props.put("hibernate.search.enabled", "false");
		return props;
	}
}
