package peer;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.query.KeyQuery;
import org.apache.kafka.streams.query.Position;
import org.apache.kafka.streams.query.PositionBound;
import org.apache.kafka.streams.query.QueryResult;
import org.apache.kafka.streams.query.StateQueryRequest;

/**
 * Read-your-writes for a PUT: wait until the local store's own Position has reached the record's
 * offset (IQv2 `withPositionBound`). The processor after the table only wakes the waiters: it runs
 * right after the table's store applied a record, so a waiter re-asks the store at once instead of
 * polling on a timer.
 */
final class Applied implements ProcessorSupplier<String, byte[], Void, Void> {
    private static final long RECHECK_NANOS = TimeUnit.MILLISECONDS.toNanos(20);
    private final ConcurrentHashMap<Integer, Signal> signals = new ConcurrentHashMap<>();

    /** Whether the store holds partition's records up to `offset` before `deadline` (nanoTime). */
    boolean await(KafkaStreams streams, String topic, String key, int partition, long offset, long deadline)
            throws InterruptedException {
        StateQueryRequest<byte[]> request = StateQueryRequest.inStore(StreamsKv.STORE)
                .withQuery(KeyQuery.<String, byte[]>withKey(key))
                .withPartitions(Set.of(partition))
                .withPositionBound(PositionBound.at(Position.emptyPosition().withComponent(topic, partition, offset)));
        Signal signal = signal(partition);
        while (true) {
            QueryResult<byte[]> result = streams.query(request).getPartitionResults().get(partition);
            if (result != null && result.isSuccess()) {
                return true;
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            // Bounded wait: restored records pass no processor, so the store is asked again anyway.
            signal.awaitPast(offset, Math.min(left, RECHECK_NANOS));
        }
    }

    private Signal signal(int partition) {
        return signals.computeIfAbsent(partition, p -> new Signal());
    }

    @Override
    public Processor<String, byte[], Void, Void> get() {
        return new Processor<>() {
            private ProcessorContext<Void, Void> context;

            @Override
            public void init(ProcessorContext<Void, Void> context) {
                this.context = context;
            }

            @Override
            public void process(Record<String, byte[]> record) {
                context.recordMetadata().ifPresent(m -> signal(m.partition()).advance(m.offset()));
            }
        };
    }

    /** The highest offset of one partition that the table has applied, with its waiters. */
    private static final class Signal {
        private long applied = -1;

        synchronized void advance(long offset) {
            if (offset > applied) {
                applied = offset;
                notifyAll();
            }
        }

        synchronized void awaitPast(long offset, long nanos) throws InterruptedException {
            long deadline = System.nanoTime() + nanos;
            long left = nanos;
            while (applied < offset && left > 0) {
                TimeUnit.NANOSECONDS.timedWait(this, left);
                left = deadline - System.nanoTime();
            }
        }
    }
}
