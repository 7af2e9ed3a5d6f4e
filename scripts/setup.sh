#!/usr/bin/env bash
# Installs everything shopstream needs into the repository, from package registries only:
#   .venv/                     Python (requirements.lock) with the shopstream package editable
#   .state/jars/kafka/         Apache Kafka broker + tools (Maven Central)
#   .state/jars/spark-kafka/   Spark's Kafka connector, same version as the installed pyspark
#   .state/jars/iceberg/       Apache Iceberg's Spark runtime, its AWS bundle (S3FileIO) and the
#                              PostgreSQL JDBC driver (its catalog)
#   .state/jars/comet/         Apache DataFusion Comet (native Spark execution) for that Spark line
#   .state/jars/class-archive/ the Spark jobs' class-data archive (AppCDS), trained for these jars
#   .state/trino/server/       Trino (Maven Central), its Iceberg plugin only: the tests' third reader
#   .state/s3-server/          moto's S3-compatible server (PyPI, its own venv): the tests' object storage
#   target/release/order-sim   the Rust producer
#   Debian packages            libssl-dev, postgresql, chromium, chromium-driver (apt-get)
# Idempotent: each step is skipped when the stamp of its inputs is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Installed where the code looks for it (shopstream.config: SHOPSTREAM_JARS_DIR, else .state/jars;
# tests/trino_server.py), whatever SHOPSTREAM_STATE_DIR says: that is a run's state, not the install.
INSTALL=$ROOT/.state
JARS=${SHOPSTREAM_JARS_DIR:-$INSTALL/jars}
STAMPS=$INSTALL/stamps
mkdir -p "$STAMPS"
PYTHON=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }
up_to_date() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

python_env() {
  local fp
  fp=$(fingerprint requirements.lock pyproject.toml)
  if up_to_date venv "$fp" && [ -x .venv/bin/python ]; then
    echo "Python environment up to date"; return
  fi
  step "Python environment (.venv, ~1-2 min on a fresh machine)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
  # pyspark and pyspark-client share one import package: prove the pair is consistent.
  .venv/bin/python -c "import pyspark, airflow, confluent_kafka, duckdb; print('pyspark', pyspark.__version__, '/ airflow', airflow.__version__)"
  echo "$fp" > "$STAMPS/venv"
}

maven_jars() {
  local name=$1 pom=$2 out=$3; shift 3
  local fp
  fp=$(echo "$* $(fingerprint "$pom")")
  if up_to_date "jars-$name" "$fp" && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "$name jars up to date"; return
  fi
  step "$name jars from Maven Central -> $out"
  rm -rf "$out"; mkdir -p "$out"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$out" -DincludeScope=runtime "$@"
  echo "$(ls "$out" | wc -l) jars"
  echo "$fp" > "$STAMPS/jars-$name"
}

debian_packages() {
  # Installs the Debian packages named, refreshing the package lists once if the first try fails.
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  local install="$sudo apt-get install -y -qq --no-install-recommends $*"
  DEBIAN_FRONTEND=noninteractive $install >/dev/null 2>&1 \
    || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $install >/dev/null; } \
    || { echo "setup: install Debian's $* (apt-get install $*), then rerun"; exit 1; }
}

openssl_headers() {
  # librdkafka needs OpenSSL for SASL/SCRAM (the cluster profile): Debian's libssl-dev.
  pkg-config --exists openssl 2>/dev/null && return
  step "OpenSSL headers (Debian libssl-dev) for the Rust producer's SASL/SCRAM"
  debian_packages libssl-dev pkg-config
}

dashboard_packages() {
  # The live dashboard's store (PostgreSQL) and the browser its tests drive (chromium + driver).
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ -x /usr/bin/chromium ] \
    && [ -x /usr/bin/chromedriver ] && return
  step "PostgreSQL and Chromium (Debian packages) for the live dashboard and its browser tests"
  debian_packages postgresql chromium chromium-driver
}

trino_server() {
  # The tests read the tables with Trino too, given only the catalog file users get. The server's
  # tarball alone (`dependency:copy`: its plugins are dependencies of its POM, some not on Maven
  # Central); its plugins other than Iceberg's go: 0.9 GB less, and it starts in ~20 s. Trino 476
  # needs Java 24 or newer: the machine's second JDK (Temurin 25), never the default Java 17.
  local version=476 out=$INSTALL/trino
  if up_to_date trino "$version" && [ -x "$out/server/bin/launcher" ]; then
    echo "Trino up to date"; return
  fi
  step "Trino $version from Maven Central -> $out/server (an 0.8 GB download; its Iceberg plugin kept)"
  rm -rf "$out"; mkdir -p "$out"
  mvn -q -B dependency:copy -Dartifact="io.trino:trino-server:$version:tar.gz" -DoutputDirectory="$out"
  tar xzf "$out/trino-server-$version.tar.gz" -C "$out" && rm "$out/trino-server-$version.tar.gz"
  mv "$out/trino-server-$version" "$out/server"
  find "$out/server/plugin" -mindepth 1 -maxdepth 1 ! -name iceberg -exec rm -rf {} +
  echo "$version" > "$STAMPS/trino"
}

s3_server() {
  # The tests put a warehouse in object storage: moto's S3 server, in a venv of its own (its AWS
  # libraries pin versions Airflow's environment must not get).
  local out=$INSTALL/s3-server fp
  fp=$(fingerprint config/s3-server/requirements.txt)
  if up_to_date s3-server "$fp" && [ -x "$out/bin/moto_server" ]; then
    echo "S3 server up to date"; return
  fi
  step "moto's S3 server (PyPI) -> $out"
  rm -rf "$out"; "$PYTHON" -m venv "$out"
  "$out/bin/pip" install --quiet --disable-pip-version-check -r config/s3-server/requirements.txt
  echo "$fp" > "$STAMPS/s3-server"
}

rust_binary() {
  openssl_headers
  step "Rust producer (cargo build --release)"
  cargo build --release --locked --quiet
}

python_env
SPARK_VERSION=$(.venv/bin/python -c "import pyspark; print(pyspark.__version__)")
maven_jars kafka config/maven/kafka-broker.pom.xml "$JARS/kafka"
# Spark ships Hadoop, Scala, lz4 and snappy itself: copy only the connector's own jars.
maven_jars spark-kafka config/maven/spark-kafka.pom.xml "$JARS/spark-kafka" \
  -Dspark.version="$SPARK_VERSION" \
  -DincludeArtifactIds=spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2
# Comet for that Spark line (its native library is inside the jar); Spark lacks only this Scala library.
maven_jars comet config/maven/comet.pom.xml "$JARS/comet" \
  -DincludeArtifactIds=comet-spark-spark4.1_2.13,scala-collection-compat_2.13
# Apache Iceberg for that Spark line, its S3 file IO, and the JDBC driver of its catalog (shopstream.lake).
maven_jars iceberg config/maven/iceberg.pom.xml "$JARS/iceberg" \
  -DincludeArtifactIds=iceberg-spark-runtime-4.1_2.13,iceberg-aws-bundle,postgresql
# Trained again whenever the JDK or a jar of the jobs' class path changed (it says so otherwise).
.venv/bin/python -m shopstream.spark.train_class_archive
trino_server
s3_server
rust_binary
dashboard_packages
echo; echo "setup complete"
