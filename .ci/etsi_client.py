"""An independent ETSI GS QKD 014 client (etsi-qkd-014-client from PyPI, not written here)
against the two KMEs that .ci/etsi_client.sh started: the same keys at both ends, once."""

import sys

from etsi_qkd_014_client import QKD014Client

pki, port_a, port_b = sys.argv[1], sys.argv[2], sys.argv[3]


def client(port, sae):
    return QKD014Client(
        f"127.0.0.1:{port}", f"{pki}/{sae}.crt", f"{pki}/{sae}.key", f"{pki}/ca.crt"
    )


alice, bob = client(port_a, "sae-alice"), client(port_b, "sae-bob")
code, status = alice.get_status("sae-bob")
assert code == 200, (code, vars(status))
print(f"status: {vars(status)}")
assert status.key_size == 256 and status.stored_key_count > 0

# The simple GET form (one key of the default size), then POST with number and size.
code, one = alice.get_key("sae-bob")
assert code == 200, (code, vars(one))
code, two = alice.get_key("sae-bob", number=2, size=512)
assert code == 200, (code, vars(two))
keys = one.keys + two.keys
ids = [k.key_id for k in keys]
code, back = bob.get_key_with_key_IDs("sae-alice", ids)
assert code == 200, (code, vars(back))
assert [(k.key_id, k.key) for k in back.keys] == [(k.key_id, k.key) for k in keys]
print(f"{len(keys)} keys: enc_keys at KME A = dec_keys at KME B")

# Once only.
code, err = bob.get_key_with_key_IDs("sae-alice", ids[:1])
assert code == 400 and "delivered before" in err.message, (code, vars(err))
# An SAE not on the link.
code, err = alice.get_key("sae-mallory")
assert code == 401, (code, vars(err))
print("refusals: a key ID twice (400), a slave SAE not on the link (401)")
