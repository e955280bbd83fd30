// Kafka's own Java client, for tests/interop.rs: run as a single-file program
// (`java -cp <kafka-clients classpath> tests/java/Interop.java …`).
//
//   produce BOOTSTRAP TOPIC KEY…     publishes `KEY` → `value-KEY` with the default partitioner;
//                                    prints `KEY PARTITION` per record
//   consume BOOTSTRAP TOPIC COUNT    reads COUNT records from the beginning of every partition;
//                                    prints `KEY PARTITION VALUE HEADER=VALUE;…` per record
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Interop {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[1], topic = args[2];
        if (args[0].equals("produce")) {
            Properties props = new Properties();
            props.put("bootstrap.servers", bootstrap);
            props.put("acks", "all");
            try (KafkaProducer<String, String> producer =
                    new KafkaProducer<>(props, new StringSerializer(), new StringSerializer())) {
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 3; i < args.length; i++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, args[i], "value-" + args[i])));
                }
                for (int i = 0; i < sent.size(); i++) {
                    System.out.println(args[i + 3] + " " + sent.get(i).get().partition());
                }
            }
        } else if (args[0].equals("consume")) {
            int count = Integer.parseInt(args[3]);
            Properties props = new Properties();
            props.put("bootstrap.servers", bootstrap);
            props.put("enable.auto.commit", "false");
            try (KafkaConsumer<String, String> consumer =
                    new KafkaConsumer<>(props, new StringDeserializer(), new StringDeserializer())) {
                List<TopicPartition> partitions = new ArrayList<>();
                consumer.partitionsFor(topic).forEach(p -> partitions.add(new TopicPartition(topic, p.partition())));
                consumer.assign(partitions);
                consumer.seekToBeginning(partitions);
                long deadline = System.currentTimeMillis() + 60_000;
                int seen = 0;
                while (seen < count && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                        StringBuilder headers = new StringBuilder();
                        for (Header header : record.headers()) {
                            headers.append(header.key()).append('=')
                                .append(new String(header.value(), StandardCharsets.UTF_8)).append(';');
                        }
                        System.out.println(record.key() + " " + record.partition() + " " + record.value() + " " + headers);
                        seen++;
                    }
                }
            }
        } else {
            throw new IllegalArgumentException("produce or consume, not " + args[0]);
        }
    }
}
