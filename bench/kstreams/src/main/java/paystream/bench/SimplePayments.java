package paystream.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The simple payment variant on Kafka Streams: per-account balance in a RocksDB store with a
 * changelog, one decision and one new balance per payment, exactly_once_v2.
 *
 * <p>Rule (the same in every peer, see bench/simple_rule.py): decline above the single limit
 * (40,000) or above the balance, else approve and subtract. Balances start at 1,000,000.
 *
 * <p>Arguments: --bootstrap H:P --input T --decisions T --balances T --app-id ID
 * --commit-ms N --threads N --state-dir DIR. Prints RUNNING once the app is processing.
 */
public final class SimplePayments {
  static final long OPENING_BALANCE = 1_000_000L;
  static final long SINGLE_LIMIT = 40_000L;
  static final String STORE = "balances";
  static final ObjectMapper JSON = new ObjectMapper();

  /** Both outputs of one payment; never serialized, only split into the two output topics. */
  record Outcome(String decision, String balance) {}

  /** Decides one payment against its account's balance and records the new balance. */
  static final class DecidePayment implements Processor<String, String, String, Outcome> {
    private ProcessorContext<String, Outcome> context;
    private KeyValueStore<String, Long> balances;

    @Override
    public void init(ProcessorContext<String, Outcome> context) {
      this.context = context;
      this.balances = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<String, String> record) {
      try {
        JsonNode payment = JSON.readTree(record.value());
        String account = payment.get("account").asText();
        long amount = payment.get("amount").asLong();
        Long stored = balances.get(account);
        long balance = stored == null ? OPENING_BALANCE : stored;
        String reason = null;
        if (amount > SINGLE_LIMIT) {
          reason = "single_limit_exceeded";
        } else if (amount > balance) {
          reason = "insufficient_funds";
        } else {
          balance -= amount;
        }
        balances.put(account, balance);
        ObjectNode decision = JSON.createObjectNode();
        decision.put("v", 1);
        decision.put("type", "decision");
        decision.put("payment_id", payment.get("payment_id").asText());
        decision.put("account", account);
        decision.put("amount", amount);
        decision.put("decision", reason == null ? "approved" : "declined");
        decision.put("reason", reason);
        decision.put("balance", balance);
        decision.set("ts", payment.get("ts"));
        ObjectNode newBalance = JSON.createObjectNode();
        newBalance.put("account", account);
        newBalance.put("balance", balance);
        context.forward(record.withValue(new Outcome(
            JSON.writeValueAsString(decision), JSON.writeValueAsString(newBalance))));
      } catch (java.io.IOException error) {
        throw new IllegalStateException("bench input is not JSON", error);
      }
    }
  }

  static Map<String, String> parse(String[] args) {
    Map<String, String> options = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      options.put(args[i].replaceFirst("^--", ""), args[i + 1]);
    }
    return options;
  }

  public static void main(String[] args) throws InterruptedException {
    Map<String, String> options = parse(args);
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, options.get("app-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, options.get("bootstrap"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, options.getOrDefault("commit-ms", "1000"));
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, options.getOrDefault("threads", "1"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, options.get("state-dir"));
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    // caching on, as Kafka's "Record caches in the Processor API" guide shows for this builder:
    // one changelog record per changed account per commit (what paystream and Quix write), not one per put
    builder.addStateStore(Stores.keyValueStoreBuilder(
        Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.Long()).withCachingEnabled());
    KStream<String, Outcome> outcomes = builder
        .stream(options.get("input"), Consumed.with(Serdes.String(), Serdes.String()))
        .process(DecidePayment::new, STORE);
    Produced<String, String> strings = Produced.with(Serdes.String(), Serdes.String());
    outcomes.mapValues(Outcome::decision).to(options.get("decisions"), strings);
    outcomes.mapValues(Outcome::balance).to(options.get("balances"), strings);

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) {
        System.out.println("RUNNING");
        System.out.flush();
      }
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
        stopped.countDown();
      }
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close();
      stopped.countDown();
    }));
    streams.start();
    stopped.await();
  }
}
