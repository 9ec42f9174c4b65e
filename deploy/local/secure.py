"""A secured local Kafka: one KRaft node whose client listener is SASL_SSL (SCRAM-SHA-512 over
TLS), with the StandardAuthorizer and least-privilege ACLs per principal, for security tests
and `paystream kafka up --secure`.

- TLS: a certificate authority and a broker certificate (for 127.0.0.1 and localhost) made
  here with `cryptography`, PEM files under `$PAYSTREAM_HOME/secure/tls/`; clients trust `ca.pem`.
- Principals (SCRAM users created when the storage is formatted): `admin` (super user: topics
  and ACLs), `paystream` (the engine), `producer` (writes the inputs), `auditor` (reads, for
  `paystream verify`), `intruder` (no ACLs at all, for the tests).
- `grant(settings)` gives each principal exactly what it needs on one deployment's topics
  (`paystream`: read its inputs, write its outputs, its group and `transactional.id` prefix
  `engine.app_id`; `producer`: write `payments` and `customer-status`; `auditor`: read all).
- The controller listener stays PLAINTEXT on loopback (the node talks to itself there).

It runs beside the plaintext cluster (ports 9192/9193, its own directory), never instead of it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.local import cluster

BASE_PORT = 9190
PASSWORDS = {"admin": "admin-secret", "paystream": "engine-secret", "producer": "producer-secret",
             "auditor": "auditor-secret", "intruder": "intruder-secret"}
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecureCluster:
    """The running secured node: where it listens and how each principal connects."""

    root: Path

    @property
    def node(self) -> cluster.Node:
        return cluster.Node(1, self.root, BASE_PORT)

    @property
    def bootstrap_servers(self) -> str:
        return self.node.listener

    @property
    def ca(self) -> Path:
        return self.root / "tls" / "ca.pem"

    def client(self, principal: str, password: str | None = None) -> dict[str, str]:
        """librdkafka settings for `principal` (what `kafka.client` holds in settings)."""
        return {"security.protocol": "SASL_SSL", "sasl.mechanisms": MECHANISM, "sasl.username": principal,
                "sasl.password": PASSWORDS[principal] if password is None else password,
                "ssl.ca.location": str(self.ca)}


def root() -> Path:
    return cluster.home() / "secure"


def certificates(directory: Path) -> tuple[Path, Path]:
    """A CA (`ca.pem`) and a broker key + certificate chain (`broker.pem`, PKCS#8), made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_path, broker_path = directory / "ca.pem", directory / "broker.pem"
    if ca_path.exists() and broker_path.exists():
        return ca_path, broker_path
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paystream local CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    broker_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                            + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    broker_path.chmod(0o600)
    return ca_path, broker_path


def _overrides(node: cluster.Node, ca: Path, broker: Path) -> dict[str, str]:
    admin = PASSWORDS["admin"]
    return {
        "listeners": f"SASL_SSL://{node.listener},CONTROLLER://{node.controller}",
        "advertised.listeners": f"SASL_SSL://{node.listener},CONTROLLER://{node.controller}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # the node reaches its own controller over loopback PLAINTEXT as ANONYMOUS
        "super.users": "User:admin;User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def up() -> SecureCluster:
    """Start the secured node (idempotent) and return it once it is ready."""
    home = root()
    secured = SecureCluster(home)
    node = secured.node
    if cluster._alive(node) and cluster._port_open(node.port):
        return secured
    libs = cluster._java_libs(cluster.home())
    ca, broker = certificates(home / "tls")
    cluster._stop(node, timeout=5)
    import shutil

    shutil.rmtree(home / "cluster", ignore_errors=True)
    users = [f"{MECHANISM}=[name={name},password={password}]" for name, password in PASSWORDS.items()]
    extra = tuple(arg for user in users for arg in ("--add-scram", user))
    cluster._format_storage(libs, [node], _overrides(node, ca, broker), extra)
    (home / "cluster" / "cluster.json").write_text(json.dumps({"brokers": 1, "secure": True}))
    cluster._start(libs, [node])
    return secured


def down() -> None:
    """Stop the secured node and delete its data (the certificates stay)."""
    node = SecureCluster(root()).node
    cluster._stop(node)
    import shutil

    shutil.rmtree(root() / "cluster", ignore_errors=True)


def grant(secured: SecureCluster, settings: Any) -> None:
    """The ACLs of one deployment (`settings`: its topics and `engine.app_id`), as the admin."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    from connectors.application import Application  # noqa: F401 - the topology names the topics
    from flows.payments import PAYMENTS

    topics = settings.topics
    app_id = settings.engine.app_id
    inputs = [*PAYMENTS.input_topics(settings), *PAYMENTS.table_topic_names(settings)]
    changelogs = list(PAYMENTS.changelog_topics(settings))
    outputs = [*PAYMENTS.output_topics(settings), *changelogs]
    everything = sorted({*inputs, *outputs, topics.payments, topics.customers})
    bindings: list[Any] = []

    def allow(principal: str, kind: Any, name: str, operation: Any, pattern: Any = ResourcePatternType.LITERAL) -> None:
        bindings.append(AclBinding(kind, name, pattern, f"User:{principal}", "*", operation,
                                   AclPermissionType.ALLOW))

    for name in everything:
        allow("paystream", ResourceType.TOPIC, name, AclOperation.DESCRIBE)
        allow("auditor", ResourceType.TOPIC, name, AclOperation.DESCRIBE)
        allow("auditor", ResourceType.TOPIC, name, AclOperation.READ)
    for name in [*inputs, *changelogs]:
        allow("paystream", ResourceType.TOPIC, name, AclOperation.READ)
    for name in outputs:
        allow("paystream", ResourceType.TOPIC, name, AclOperation.WRITE)
    allow("paystream", ResourceType.TOPIC, settings.credits_topic, AclOperation.DELETE)  # purge consumed credits
    allow("paystream", ResourceType.GROUP, app_id, AclOperation.READ, ResourcePatternType.PREFIXED)
    for operation in (AclOperation.WRITE, AclOperation.DESCRIBE):
        allow("paystream", ResourceType.TRANSACTIONAL_ID, app_id, operation, ResourcePatternType.PREFIXED)
    for name in (topics.payments, topics.customers, topics.rules):
        allow("producer", ResourceType.TOPIC, name, AclOperation.WRITE)
        allow("producer", ResourceType.TOPIC, name, AclOperation.DESCRIBE)
    for principal in ("paystream", "producer"):
        allow(principal, ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE)
    allow("auditor", ResourceType.GROUP, "paystream-verify-", AclOperation.READ, ResourcePatternType.PREFIXED)
    allow("paystream", ResourceType.GROUP, "lag-", AclOperation.READ, ResourcePatternType.PREFIXED)  # tools' probes
    admin = AdminClient({"bootstrap.servers": secured.bootstrap_servers, **secured.client("admin")})
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()
    # the authorizer applies new ACLs from the metadata log a moment later: wait until it has them all
    wanted = {(b.restype, b.name, b.principal, b.operation) for b in bindings}
    match_all = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                 AclPermissionType.ANY)
    deadline = time.monotonic() + 30
    while True:
        seen = {(b.restype, b.name, b.principal, b.operation)
                for b in admin.describe_acls(match_all, request_timeout=10).result()}
        if wanted <= seen:
            return
        if time.monotonic() > deadline:
            raise cluster.ClusterError(f"{len(wanted - seen)} ACLs not applied after 30 s")
        time.sleep(0.2)
