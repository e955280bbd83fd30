// Kafka's Java client as a peer in `benches/peers/run.sh`: a plain `KafkaConsumer` poll loop that
// decodes every record with Jackson into the benchmark's `Reading` and checks it as the Rust
// handler's `validator` rules do, committing with `commitAsync` after each poll (manual commits,
// like the runtime's). Run as a single-file program:
//
//   java -cp <kafka-clients + jackson classpath> benches/peers/JavaConsumer.java BOOTSTRAP TOPIC COUNT GROUP
//
// Prints `consumed COUNT messages in SECONDS s`, timed from the first record to the last.
import java.time.Duration;
import java.util.List;
import java.util.Properties;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class JavaConsumer {
    /** The benchmark's event. */
    public static class Reading {
        public String sensor;
        public double value;
        public long seq;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[3];
        long count = Long.parseLong(args[2]);
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        ObjectMapper mapper = new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);
        long seen = 0, invalid = 0, first = 0;
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (seen < count) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(100));
                if (records.isEmpty()) {
                    continue;
                }
                if (first == 0) {
                    first = System.nanoTime();
                }
                for (ConsumerRecord<byte[], byte[]> record : records) {
                    Reading reading = mapper.readValue(record.value(), Reading.class);
                    if (reading.sensor == null || reading.sensor.isEmpty() || reading.value < -100.0 || reading.value > 100.0) {
                        invalid++;
                    }
                    seen++;
                }
                consumer.commitAsync();
            }
            long last = System.nanoTime();
            consumer.commitSync();
            if (invalid > 0) {
                System.err.println(invalid + " invalid readings");
                System.exit(1);
            }
            System.out.printf("consumed %d messages in %.3f s%n", seen, (last - first) / 1e9);
        }
    }
}
