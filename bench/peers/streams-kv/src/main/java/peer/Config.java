package peer;

import java.util.HashMap;
import java.util.Map;

/** One peer instance's settings: `--name value` arguments, else PEER_NAME environment variables. */
record Config(
        String bootstrapServers,
        String topic,
        String host,
        int port,
        String stateDir,
        String applicationId,
        int streamThreads,
        int httpThreads) {

    static Config from(String[] args, Map<String, String> env) {
        Map<String, String> given = new HashMap<>();
        for (int i = 0; i < args.length; i += 2) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("arguments are --name value pairs: " + args[i]);
            }
            given.put(args[i].substring(2), args[i + 1]);
        }
        Lookup lookup = new Lookup(given, env);
        Config config = new Config(
                lookup.get("bootstrap-servers", env.getOrDefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")),
                lookup.get("topic", null),
                lookup.get("host", "127.0.0.1"),
                Integer.parseInt(lookup.get("port", "8090")),
                lookup.get("state-dir", null),
                lookup.get("application-id", "streams-kv"),
                Integer.parseInt(lookup.get("stream-threads", "1")),
                Integer.parseInt(lookup.get("http-threads", "16")));
        if (!given.keySet().stream().allMatch(Lookup.NAMES::contains)) {
            throw new IllegalArgumentException("unknown argument among " + given.keySet() + "; known: " + Lookup.NAMES);
        }
        return config;
    }

    /** Reads `--name` from the arguments, else PEER_NAME (upper case, '-' as '_'). */
    private record Lookup(Map<String, String> given, Map<String, String> env) {
        static final java.util.Set<String> NAMES = java.util.Set.of(
                "bootstrap-servers", "topic", "host", "port", "state-dir", "application-id",
                "stream-threads", "http-threads");

        String get(String name, String fallback) {
            String value = given.getOrDefault(name, env.get("PEER_" + name.toUpperCase().replace('-', '_')));
            if (value == null && fallback == null) {
                throw new IllegalArgumentException("--" + name + " (or PEER_"
                        + name.toUpperCase().replace('-', '_') + ") is required");
            }
            return value == null ? fallback : value;
        }
    }
}
