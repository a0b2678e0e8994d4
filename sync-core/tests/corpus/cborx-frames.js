// Writes the cborx-*.hex frames of this corpus, and decodes frames given as hex arguments,
// with cbor-x configured as automerge-repo configures it (packages/automerge-repo/src/helpers/cbor.ts).
// Usage: npm install cbor-x@1 && node cborx-frames.js [hex ...]
// Not run by the test suite; kept so the frames can be re-made and our encodings checked.
const { Encoder, decode } = require("cbor-x")
const fs = require("fs")

const enc = new Encoder({ tagUint8Array: false, useRecords: false })
const doc = "4NMNnkMhL8jXrdJ9jamS58PAVdXu"
const frames = {
  "join": { type: "join", senderId: "u1:tablet", peerMetadata: { storageId: undefined, isEphemeral: true }, supportedProtocolVersions: ["1"] },
  "join-storage-id": { type: "join", senderId: "u1:tablet", peerMetadata: { storageId: "3c2a5e9e-1f4b-4f63-9d2a-1b7f0c5e8a91", isEphemeral: false }, supportedProtocolVersions: ["1"] },
  "request": { type: "request", documentId: doc, targetId: "server", data: new Uint8Array([0x42, 0, 0, 1, 2]), senderId: "u1:tablet" },
  "sync": { type: "sync", documentId: doc, targetId: "server", data: new Uint8Array([0x42, 7]), senderId: "u1:tablet" },
  "ephemeral": { type: "ephemeral", documentId: doc, targetId: "server", data: new Uint8Array([1, 2, 3]), senderId: "u1:tablet", count: 4294967296 + 5, sessionId: "a1b2c3" },
  "remote-subscription-change": { type: "remote-subscription-change", senderId: "u1:tablet", targetId: "server", add: ["s1"], remove: undefined },
  "remote-heads-changed": { type: "remote-heads-changed", senderId: "u1:tablet", targetId: "server", documentId: doc, newHeads: { s1: { heads: ["abc"], timestamp: 1714532645123 } } },
  "leave": { type: "leave", senderId: "u1:tablet" },
}

const args = process.argv.slice(2)
if (args.length === 0) {
  for (const [name, msg] of Object.entries(frames)) {
    const hex = Buffer.from(enc.encode(msg)).toString("hex")
    const header = "# expect: ok " + msg.type + "\n# encoded by cbor-x 1.x with automerge-repo options {tagUint8Array: false, useRecords: false}\n"
    fs.writeFileSync(`cborx-${name}.hex`, header + hex + "\n")
  }
} else {
  const show = (k, v) => (v instanceof Uint8Array ? Array.from(v) : typeof v === "bigint" ? `BigInt(${v})` : v)
  for (const hex of args) console.log(JSON.stringify(decode(Buffer.from(hex, "hex")), show))
}
