// A Node.js client of Tally's gRPC API, loaded straight from proto/ (no generated code), to prove the
// contract is usable outside Python. tests/tally/test_node_client.py runs it against a real server.
//
// Usage: node client.mjs TARGET API_KEY
// Prints one JSON object: the IngestBatch ack, the created customer, every listed customer (following
// page tokens) and the status of a GetCustomer for a customer that does not exist.
import { fileURLToPath } from "node:url";
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoDir = path.resolve(here, "..", "..", "proto");

const [target, apiKey] = process.argv.slice(2);
if (!target || !apiKey) {
  console.error("usage: node client.mjs TARGET API_KEY");
  process.exit(2);
}

// google/protobuf/timestamp.proto comes with protobufjs (proto-loader's dependency); int64 as strings so
// no precision is lost, enums as names, default values present so a missing field reads as "" or 0.
const definition = protoLoader.loadSync(["tally/v1/ingest.proto", "tally/v1/billing.proto"], {
  includeDirs: [protoDir],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const tally = grpc.loadPackageDefinition(definition).tally.v1;

const credentials = grpc.credentials.createInsecure();
const ingest = new tally.IngestService(target, credentials);
const billing = new tally.BillingService(target, credentials);

function call(client, method, request) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${apiKey}`);
  const deadline = new Date(Date.now() + 30_000);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function timestamp(ms) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

async function main() {
  const now = Date.now() - 60_000;
  const events = [
    { event_id: "node-1", customer: "node_cus_1", meter: "api_calls", timestamp: timestamp(now), value: "" },
    { event_id: "node-2", customer: "node_cus_1", meter: "api_calls", timestamp: timestamp(now + 1), value: "" },
    {
      event_id: "node-3",
      customer: "node_cus_1",
      meter: "tokens",
      timestamp: timestamp(now + 2),
      value: "1234.56",
      properties: { model: "small" },
    },
    // A value with more decimals than the meter's scale: rejected, with its index.
    { event_id: "node-4", customer: "node_cus_1", meter: "tokens", timestamp: timestamp(now + 3), value: "0.125" },
  ];
  const ack = await call(ingest, "IngestBatch", { batch_id: "node-batch-1", events });

  const created = await call(billing, "CreateCustomer", {
    customer: {
      external_id: "node_cus_1",
      name: "Nodé Customer",
      currency: "EUR",
      timezone: "Europe/Paris",
      email: "billing@node.example",
      address: { city: "Paris", country: "FR" },
      metadata: { source: "node" },
    },
  });

  const customers = [];
  let pageToken = "";
  do {
    const page = await call(billing, "ListCustomers", { page_size: 1, page_token: pageToken });
    customers.push(...page.customers);
    pageToken = page.next_page_token;
  } while (pageToken);

  let missing = null;
  try {
    await call(billing, "GetCustomer", { external_id: "nobody" });
  } catch (err) {
    missing = { code: err.code, details: err.details };
  }

  const slim = (c) => ({
    external_id: c.external_id,
    name: c.name,
    currency: c.currency,
    timezone: c.timezone,
    email: c.email,
    city: c.address ? c.address.city : "",
    metadata: c.metadata,
    created_at_seconds: c.created_at ? c.created_at.seconds : "",
  });
  const result = {
    ingest: {
      batch_id: ack.batch_id,
      accepted: ack.accepted,
      duplicate: ack.duplicate,
      rejected: ack.rejected,
      errors: ack.errors.map((e) => ({ index: e.index, field: e.field, code: e.code })),
    },
    created: slim(created),
    customers: customers.map(slim),
    missing,
  };
  process.stdout.write(JSON.stringify(result) + "\n");
}

main()
  .then(() => {
    ingest.close();
    billing.close();
  })
  .catch((err) => {
    process.stderr.write(`error: ${err.code ?? ""} ${err.details ?? err.message}\n`);
    process.exit(1);
  });
