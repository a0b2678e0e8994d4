// The reference sync server for the side-by-side benchmarks: what the npm package
// @automerge/automerge-repo-sync-server does — a Repo with the WebSocket server adapter and
// file-system storage that accepts any peer and shares nothing unasked — but on the current
// automerge-repo 2.5 and automerge 3 (the published sync-server package still pins
// automerge-repo 1.x). Installed outside the repository by docs/bench/side-by-side.sh:
//
//   npm install --prefix /tmp/fm-ref25 --no-save $(cat docs/bench/reference/packages.txt)
//   NODE_PATH=/tmp/fm-ref25/node_modules PORT=18082 DATA_DIR=/tmp/ref-data node docs/bench/reference/server.mjs

import http from "node:http"
import os from "node:os"
import { createRequire } from "node:module"

const prefix = process.env.REF_PREFIX ?? "/tmp/fm-ref25"
const require = createRequire(`${prefix}/package.json`)
const { WebSocketServer } = require("ws")
const { Repo } = await import(require.resolve("@automerge/automerge-repo"))
const { NodeWSServerAdapter } = await import(require.resolve("@automerge/automerge-repo-network-websocket"))
const { NodeFSStorageAdapter } = await import(require.resolve("@automerge/automerge-repo-storage-nodefs"))

const port = Number(process.env.PORT ?? 3030)
const dir = process.env.DATA_DIR ?? ".amrg"

const wss = new WebSocketServer({ noServer: true })
const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `reference-${os.hostname()}`,
  // A relay: it keeps what clients send and answers what they ask, offering nothing unasked.
  sharePolicy: async () => false,
})

const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain" })
  res.end("reference sync server (automerge-repo 2.5)\n")
})
server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, ws => wss.emit("connection", ws, req))
})
server.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`))

const stop = async () => {
  server.close()
  await repo.shutdown()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
