package peer;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import java.io.IOException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyQueryMetadata;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.state.HostInfo;
import org.apache.kafka.streams.state.QueryableStoreTypes;

/**
 * GET and PUT /api/kv/{key}, the store's URL shapes: the active host of the key's partition answers
 * (GET from its local store, PUT by producing and waiting for its own store); any other instance
 * answers 307 to the active host's same path.
 */
final class KvHandler implements HttpHandler {
    static final String PREFIX = "/api/kv/";
    private static final Serializer<String> KEYS = Serdes.String().serializer();
    private static final long PRODUCE_TIMEOUT_MS = 10_000;
    private static final long APPLY_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);

    private final KafkaStreams streams;
    private final Producer<String, byte[]> producer;
    private final Applied applied;
    private final String topic;
    private final HostInfo self;

    KvHandler(KafkaStreams streams, Producer<String, byte[]> producer, Applied applied, String topic, HostInfo self) {
        this.streams = streams;
        this.producer = producer;
        this.applied = applied;
        this.topic = topic;
        this.self = self;
    }

    @Override
    public void handle(HttpExchange exchange) throws IOException {
        try (exchange) {
            String key = key(exchange);
            if (key == null) {
                Http.error(exchange, 404, "not_found", "No such URL.");
                return;
            }
            KeyQueryMetadata owner = owner(key);
            if (owner == null) {
                exchange.getResponseHeaders().set("Retry-After", "1");
                Http.error(exchange, 503, "unavailable", "The key's partition has no active host right now.");
            } else if (!owner.activeHost().equals(self)) {
                Http.redirect(exchange, location(owner.activeHost(), exchange));
            } else if (exchange.getRequestMethod().equals("GET")) {
                get(exchange, key, owner.partition());
            } else if (exchange.getRequestMethod().equals("PUT")) {
                put(exchange, key, owner.partition());
            } else {
                exchange.getResponseHeaders().set("Allow", "GET, PUT");
                Http.error(exchange, 405, "method_not_allowed", "GET or PUT.");
            }
        } catch (InterruptedException exc) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException exc) { // InvalidStateStoreException while partitions move
            exchange.getResponseHeaders().set("Retry-After", "1");
            Http.error(exchange, 503, "unavailable", exc.toString());
        }
    }

    /** The decoded key of /api/kv/{key} (a trailing slash allowed), or null. */
    private static String key(HttpExchange exchange) {
        String path = exchange.getRequestURI().getRawPath().substring(PREFIX.length());
        if (path.endsWith("/")) {
            path = path.substring(0, path.length() - 1);
        }
        if (path.isEmpty() || path.contains("/")) {
            return null;
        }
        return URLDecoder.decode(path.replace("+", "%2B"), StandardCharsets.UTF_8);
    }

    private KeyQueryMetadata owner(String key) {
        try {
            KeyQueryMetadata owner = streams.queryMetadataForKey(StreamsKv.STORE, key, KEYS);
            return owner == null || owner.equals(KeyQueryMetadata.NOT_AVAILABLE) ? null : owner;
        } catch (IllegalStateException exc) { // not running or rebalancing
            return null;
        }
    }

    private static String location(HostInfo host, HttpExchange exchange) {
        String query = exchange.getRequestURI().getRawQuery();
        return "http://" + host.host() + ":" + host.port() + exchange.getRequestURI().getRawPath()
                + (query == null ? "" : "?" + query);
    }

    /** The value in this instance's active store (null when absent); throws while unavailable. */
    private byte[] local(String key, int partition) {
        return streams.store(StoreQueryParameters
                        .fromNameAndType(StreamsKv.STORE, QueryableStoreTypes.<String, byte[]>keyValueStore())
                        .withPartition(partition))
                .get(key);
    }

    private void get(HttpExchange exchange, String key, int partition) throws IOException {
        byte[] value = local(key, partition);
        if (value == null) {
            Http.error(exchange, 404, "not_found", "No such key.");
        } else {
            Http.send(exchange, 200, value);
        }
    }

    private void put(HttpExchange exchange, String key, int partition) throws IOException, InterruptedException {
        byte[] value = exchange.getRequestBody().readAllBytes();
        if (value.length == 0) {
            Http.error(exchange, 400, "parse_error", "The request body must be a JSON value.");
            return;
        }
        boolean created = local(key, partition) == null;
        RecordMetadata written;
        try {
            written = producer.send(new ProducerRecord<>(topic, key, value)).get(PRODUCE_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException | TimeoutException exc) {
            Http.error(exchange, 503, "unknown_outcome", "The produce did not complete: " + exc);
            return;
        }
        if (!applied.await(written.partition(), written.offset(), APPLY_TIMEOUT_NANOS)) {
            Http.send(exchange, 202, String.format(
                    "{\"code\":\"accepted_not_applied\",\"version\":\"%d:%d\"}", written.partition(), written.offset()));
            return;
        }
        exchange.getResponseHeaders().set("ETag", "\"" + written.partition() + ":" + written.offset() + "\"");
        Http.send(exchange, created ? 201 : 200, value);
    }
}
