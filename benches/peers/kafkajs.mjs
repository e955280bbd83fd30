// KafkaJS as a peer in `benches/peers/run.sh`: `eachMessage` with `JSON.parse` and the
// benchmark's validation rules, KafkaJS's default (auto) commits — what a NestJS + KafkaJS service
// of the seeds does per message.
//
//   node benches/peers/kafkajs.mjs BOOTSTRAP TOPIC COUNT GROUP
//
// Prints `consumed COUNT messages in SECONDS s`, timed from the first message to the last.
import { Kafka, logLevel } from "kafkajs";

const [bootstrap, topic, countArg, group] = process.argv.slice(2);
const count = Number(countArg);
const kafka = new Kafka({ clientId: "peer-kafkajs", brokers: bootstrap.split(","), logLevel: logLevel.ERROR });
const consumer = kafka.consumer({ groupId: group });
let seen = 0;
let invalid = 0;
let first = 0n;
let last = 0n;
let done;
const finished = new Promise((resolve) => (done = resolve));

await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  eachMessage: async ({ message }) => {
    if (seen === 0) first = process.hrtime.bigint();
    const reading = JSON.parse(message.value);
    if (typeof reading.sensor !== "string" || reading.sensor.length === 0 || reading.value < -100 || reading.value > 100) {
      invalid++;
    }
    seen++;
    if (seen === count) {
      last = process.hrtime.bigint();
      done();
    }
  },
});
await finished;
await consumer.disconnect();
if (invalid > 0) {
  console.error(`${invalid} invalid readings`);
  process.exit(1);
}
console.log(`consumed ${seen} messages in ${(Number(last - first) / 1e9).toFixed(3)} s`);
