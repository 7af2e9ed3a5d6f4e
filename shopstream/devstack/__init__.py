"""The local stack that stands in for managed services on one machine: the Kafka broker (KRaft)
and the 3-node SASL cluster, Spark standalone, the supervisor of the live ingest service, and the
process plumbing they share. The product (`shopstream` outside this package) never imports it:
it reaches the real services through configuration (`shopstream.config`) alone."""
