package peer;

import com.sun.net.httpserver.HttpExchange;
import java.io.IOException;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * Ready = the Streams client is RUNNING and no store is restoring: what the benchmark times for a
 * cold restore and a warm restart. Logs each partition's restore so a run can be read afterwards.
 */
final class Readiness implements KafkaStreams.StateListener, StateRestoreListener {
    private volatile KafkaStreams.State state = KafkaStreams.State.CREATED;
    private final Set<TopicPartition> restoring = ConcurrentHashMap.newKeySet();
    private final long started = System.nanoTime();

    boolean ready() {
        return state == KafkaStreams.State.RUNNING && restoring.isEmpty();
    }

    void handle(HttpExchange exchange) throws IOException {
        String body = String.format("{\"state\":\"%s\",\"restoring\":%d}", state, restoring.size());
        Http.send(exchange, ready() ? 200 : 503, body);
    }

    @Override
    public void onChange(KafkaStreams.State newState, KafkaStreams.State oldState) {
        state = newState;
        log("state " + oldState + " -> " + newState);
    }

    @Override
    public void onRestoreStart(TopicPartition partition, String store, long start, long end) {
        restoring.add(partition);
    }

    @Override
    public void onBatchRestored(TopicPartition partition, String store, long end, long count) {
    }

    @Override
    public void onRestoreEnd(TopicPartition partition, String store, long total) {
        restoring.remove(partition);
        log("restored " + total + " records of " + partition);
    }

    @Override
    public void onRestoreSuspended(TopicPartition partition, String store, long total) {
        restoring.remove(partition);
    }

    private void log(String message) {
        System.err.printf("streams-kv: %.3fs %s%n", (System.nanoTime() - started) / 1e9, message);
    }
}
