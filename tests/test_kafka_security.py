"""The cluster's logins and their translation for each client (pure logic; the real refusals and
ACLs are tested on the loopback cluster in test_cluster.py)."""

from __future__ import annotations

import stat

from shopstream.config import SPARK_CLIENT_FILE, java_client_options, kafka_client_config, split_client_config
from shopstream.devstack.kafka_security import ADMIN, PRODUCER, SPARK, Credentials


def test_credentials_are_made_once_private_and_random(tmp_path):
    file = tmp_path / "credentials.json"
    made = Credentials.load_or_create(file)
    assert set(made.passwords) == {ADMIN, PRODUCER, SPARK}
    assert len(set(made.passwords.values())) == 3
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert Credentials.load_or_create(file) == made  # a restart keeps the users' passwords
    assert Credentials.load_or_create(tmp_path / "other.json") != made


def test_each_role_logs_in_as_its_own_principal(tmp_path):
    credentials = Credentials.load_or_create(tmp_path / "c.json")
    producer = credentials.client_settings("producer")
    assert producer == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": PRODUCER,
        "sasl.password": credentials.passwords[PRODUCER],
    }
    assert credentials.client_settings("spark")["sasl.username"] == SPARK
    args = credentials.scram_format_args()
    assert f"--add-scram=SCRAM-SHA-256=[name={ADMIN},password={credentials.passwords[ADMIN]}]" in args


def test_brokers_require_logins_and_enforce_acls(tmp_path):
    properties = Credentials.load_or_create(tmp_path / "c.json").listener_properties(19092, 19192)
    lines = dict(line.split("=", 1) for line in properties.splitlines())
    assert lines["listener.security.protocol.map"] == "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    assert lines["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert lines["super.users"] == f"User:{ADMIN}"
    assert lines["allow.everyone.if.no.acl.found"] == "false"
    assert "PLAINTEXT://" not in lines["listeners"]


def test_the_spark_source_gets_a_jaas_login_and_a_pem_trust_store():
    settings = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert java_client_options(settings) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="u" password="p";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": "/etc/ca.pem",
    }
    assert java_client_options({"linger.ms": "5"}) == {"linger.ms": "5"}


def test_a_connections_consumer_group_settings_stay_with_the_connection():
    """A kafka Connection's extras may carry a group for other tools: the topic check and Spark's
    source take the bootstrap list and the login, never another consumer's group."""
    extras = {
        "bootstrap.servers": "b1:9092,b2:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "group.id": "airflow-consumers",
        "auto.offset.reset": "latest",
        "enable.auto.commit": "true",
    }
    assert split_client_config(extras) == ("b1:9092,b2:9092", {"security.protocol": "SASL_PLAINTEXT"})


def test_the_cluster_profile_logs_the_jobs_in_as_spark(tmp_path, monkeypatch):
    monkeypatch.delenv("SHOPSTREAM_KAFKA_CONFIG", raising=False)
    monkeypatch.delenv("SHOPSTREAM_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("SHOPSTREAM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SHOPSTREAM_PROFILE", "cluster")
    assert "sasl.username" not in kafka_client_config()  # no cluster made yet: no login
    # What `make cluster-up` leaves in the cluster's folder: the product reads the file, as it
    # would read a mounted secret, never the local cluster's credentials store.
    credentials = Credentials.load_or_create(tmp_path / "cluster" / "kafka" / "credentials.json")
    credentials.write_client_settings("spark", tmp_path / "cluster" / "kafka" / SPARK_CLIENT_FILE)
    assert stat.S_IMODE((tmp_path / "cluster" / "kafka" / SPARK_CLIENT_FILE).stat().st_mode) == 0o600
    config = kafka_client_config()
    assert config["sasl.username"] == SPARK and config["sasl.password"] == credentials.passwords[SPARK]
    assert config["bootstrap.servers"] == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    monkeypatch.setenv("SHOPSTREAM_PROFILE", "local")
    assert kafka_client_config() == {"bootstrap.servers": "127.0.0.1:9092"}
    # A managed cluster's login: a settings file named by the environment, in any profile.
    secret = tmp_path / "mounted.json"
    secret.write_text('{"security.protocol": "SASL_SSL", "bootstrap.servers": "kafka.example:9093"}')
    monkeypatch.setenv("SHOPSTREAM_KAFKA_CONFIG_FILE", str(secret))
    assert kafka_client_config() == {
        "security.protocol": "SASL_SSL",
        "bootstrap.servers": "kafka.example:9093",
    }
