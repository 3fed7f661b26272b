package peer;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;

/**
 * Read-your-writes for a PUT: per partition, the highest offset the table has applied, recorded by
 * a processor that runs right after the table's store wrote the record, and waiters on it.
 *
 * <p>Kafka Streams offers the store's own Position for this (IQv2 `withPositionBound`), but in
 * 4.1.1 an IQv2 query on a RocksDB store takes the position lock and then the store lock, while
 * the stream thread's put takes them in the other order: under concurrent PUTs the two deadlock
 * (KAFKA-19629, fixed upstream by apache/kafka#23184). So the peer tracks the applied offset itself
 * and reads through IQv1, which takes the store lock only.
 */
final class Applied implements ProcessorSupplier<String, byte[], Void, Void> {
    private final ConcurrentHashMap<Integer, Signal> signals = new ConcurrentHashMap<>();

    /** Whether the table applies `partition` up to `offset` within `nanos`. */
    boolean await(int partition, long offset, long nanos) throws InterruptedException {
        return signal(partition).awaitPast(offset, nanos);
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

    /** The highest applied offset of one partition, with its waiters. */
    private static final class Signal {
        private long applied = -1;

        synchronized void advance(long offset) {
            if (offset > applied) {
                applied = offset;
                notifyAll();
            }
        }

        synchronized boolean awaitPast(long offset, long nanos) throws InterruptedException {
            long deadline = System.nanoTime() + nanos;
            long left = nanos;
            while (applied < offset && left > 0) {
                TimeUnit.NANOSECONDS.timedWait(this, left);
                left = deadline - System.nanoTime();
            }
            return applied >= offset;
        }
    }
}
