// Drives Piston's WS /api/v2/connect with the npm ws client:
//   node ws.mjs <ws url> <scenario>
// Prints one JSON line: {messages: [...], close: {code, reason}}.
import WebSocket from "ws";

const [url, scenario] = process.argv.slice(2);
const ws = new WebSocket(url);
const messages = [];
const send = (m) => ws.send(JSON.stringify(m));

// Reads two lines and answers each as it comes: the second line is only sent once
// the answer to the first has arrived, so the exchange is interactive.
const interactive = {
  type: "init", language: "python", version: "*",
  files: [{ content: "import sys\nfor i in range(2):\n    line = sys.stdin.readline()\n    print('got', line.strip(), flush=True)\n" }],
};

ws.on("open", () => {
  switch (scenario) {
    case "interactive":
      send(interactive);
      break;
    case "data-before-init":
      send({ type: "data", stream: "stdin", data: "x" });
      break;
    case "no-init":
      break; // the server closes after a second
    case "bad-signal":
      send({ ...interactive });
      setTimeout(() => send({ type: "signal", signal: "SIGNOPE" }), 300);
      break;
    case "stdout-write":
      send({ ...interactive });
      setTimeout(() => send({ type: "data", stream: "stdout", data: "x" }), 300);
      break;
    case "twice":
      send(interactive);
      send(interactive);
      break;
    case "signal":
      send({ type: "init", language: "python", version: "3.x",
        files: [{ content: "import sys, time\nprint('ready', flush=True)\ntime.sleep(30)\n" }] });
      break;
    case "bad-init":
      send({ type: "init", language: "cobol", version: "*", files: [{ content: "x" }] });
      break;
  }
});

let stdin = 0;
ws.on("message", (data) => {
  const m = JSON.parse(data.toString());
  messages.push(m);
  if (m.type === "data" && m.stream === "stdout") {
    if (scenario === "interactive" && stdin < 2) {
      send({ type: "data", stream: "stdin", data: `line${++stdin}\n` });
    }
    if (scenario === "signal" && m.data.includes("ready")) {
      send({ type: "signal", signal: "SIGTERM" });
    }
  }
  if (m.type === "stage" && m.stage === "run" && scenario === "interactive") {
    send({ type: "data", stream: "stdin", data: `line${++stdin}\n` });
  }
});

ws.on("close", (code, reason) => {
  console.log(JSON.stringify({ messages, close: { code, reason: reason.toString() } }));
});
ws.on("error", (err) => {
  console.log(JSON.stringify({ messages, error: String(err) }));
  process.exit(0);
});
