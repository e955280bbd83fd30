// Describes consumer groups with Kafka's Java admin client (DescribeGroups for `classic` groups,
// ConsumerGroupDescribe for `consumer` ones): one line per group, `<id> <members> <state>`.
// librdkafka's DescribeGroups cannot see `consumer`-protocol groups (it reports them `Dead`).
//
//   java -cp <kafka-clients classpath> tests/java/Groups.java <bootstrap> <group>...

import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.common.errors.GroupIdNotFoundException;

public class Groups {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        List<String> ids = Arrays.asList(args).subList(1, args.length);
        try (Admin admin = Admin.create(props)) {
            var described = admin.describeConsumerGroups(ids).describedGroups();
            for (String id : ids) {
                try {
                    ConsumerGroupDescription group = described.get(id).get();
                    System.out.println(id + " " + group.members().size() + " " + group.groupState());
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof GroupIdNotFoundException) {
                        System.out.println(id + " 0 DEAD");
                    } else {
                        throw e;
                    }
                }
            }
        }
    }
}
