package peer;

import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.state.HostInfo;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The Kafka Streams service the store is measured against: a KTable over the store's own compacted
 * topic (RocksDB, the source topic as its changelog), served by the JDK's HTTP server.
 *
 *   java -jar streams-kv.jar --topic T --port P --state-dir D [--application-id A]
 *        [--bootstrap-servers B] [--host H] [--stream-threads 1] [--http-threads 16]
 */
public final class StreamsKv {
    static final String STORE = "kv";

    private StreamsKv() {
    }

    public static void main(String[] args) throws Exception {
        // Before the first logger or server: Kafka's INFO lines drown the peer's own; without
        // TCP_NODELAY the JDK server's separate header and body writes meet delayed ACKs (40 ms).
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        System.setProperty("sun.net.httpserver.nodelay", "true");
        Config config = Config.from(args, System.getenv());
        HostInfo self = new HostInfo(config.host(), config.port());
        Applied applied = new Applied();
        Readiness readiness = new Readiness();
        Properties properties = streamsProperties(config);
        KafkaStreams streams = new KafkaStreams(topology(config.topic(), applied, properties), properties);
        streams.setStateListener(readiness);
        streams.setGlobalStateRestoreListener(readiness);
        streams.setUncaughtExceptionHandler(exc -> {
            exc.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Producer<String, byte[]> producer = new KafkaProducer<>(
                producerProperties(config), new StringSerializer(), new ByteArraySerializer());

        HttpServer server = HttpServer.create(new InetSocketAddress(config.host(), config.port()), 256);
        server.createContext(KvHandler.PREFIX, new KvHandler(streams, producer, applied, config.topic(), self));
        server.createContext("/readyz", readiness::handle);
        server.setExecutor(Executors.newFixedThreadPool(config.httpThreads()));

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.stop(0);
            // A clean close writes the checkpoints a warm restart resumes from.
            streams.close(Duration.ofSeconds(30));
            producer.close(Duration.ofSeconds(5));
            stopped.countDown();
        }));
        streams.start();
        server.start();
        stopped.await();
    }

    static Topology topology(String topic, Applied applied, Properties properties) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.table(
                        topic,
                        Consumed.with(Serdes.String(), Serdes.ByteArray()),
                        Materialized.<String, byte[], KeyValueStore<Bytes, byte[]>>as(STORE)
                                .withKeySerde(Serdes.String())
                                .withValueSerde(Serdes.ByteArray())
                                // Applied at once, so a PUT's wait ends when its record is processed.
                                .withCachingDisabled())
                .toStream()
                .process(applied);
        // The optimisation makes the source topic the store's changelog: no second copy of the data.
        return builder.build(properties);
    }

    static Properties streamsProperties(Config config) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, config.applicationId());
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, config.bootstrapServers());
        p.put(StreamsConfig.APPLICATION_SERVER_CONFIG, config.host() + ":" + config.port());
        p.put(StreamsConfig.STATE_DIR_CONFIG, config.stateDir());
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, config.streamThreads());
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, StreamsConfig.REUSE_KTABLE_SOURCE_TOPICS);
        // A joining instance takes its share of active partitions at once (and restores them)
        // instead of warming up replicas until a probing rebalance minutes later.
        p.put(StreamsConfig.ACCEPTABLE_RECOVERY_LAG_CONFIG, Long.MAX_VALUE);
        // Static membership: a restarted instance gets its partitions back without a rebalance
        // waiting for its old self's session to expire (the store does the same).
        p.put("group.instance.id", config.applicationId() + "-" + config.host() + "-" + config.port());
        return p;
    }

    static Properties producerProperties(Config config) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, config.bootstrapServers());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 1); // the store's web producer lingers 1 ms too
        return p;
    }
}
