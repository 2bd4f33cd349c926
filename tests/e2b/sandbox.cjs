// The real @e2b/code-interpreter SDK against sandboxd's E2B front, pointed at it with
// E2B_API_URL and E2B_SANDBOX_URL (set by the test). Prints one JSON line of what it saw.
'use strict';
const { Sandbox } = require('@e2b/code-interpreter');

async function main() {
  const seen = {};
  const sbx = await Sandbox.create({ timeoutMs: 120000 });
  seen.created = typeof sbx.sandboxId === 'string' && sbx.sandboxId.length > 0;
  await sbx.runCode('x = 20');
  const lines = [];
  const ex = await sbx.runCode('print("x is", x)\nx * 2', { onStdout: (m) => lines.push(m.line) });
  seen.stdout = lines.join('');
  seen.text = ex.text;
  seen.count = ex.executionCount;
  const plot = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()');
  seen.png = plot.results.length > 0 && typeof plot.results[0].png === 'string' ? plot.results[0].png.slice(0, 8) : null;
  const df = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2]})');
  seen.html = !!(df.results[0] && df.results[0].html && df.results[0].html.includes('<table'));
  const err = await sbx.runCode('1/0');
  seen.error = err.error ? [err.error.name, err.error.value] : null;
  const ctx = await sbx.createCodeContext();
  const inCtx = await sbx.runCode('"x" in dir()', { context: ctx });
  seen.contextFresh = inCtx.text;
  seen.contexts = (await sbx.listCodeContexts()).length;
  await sbx.removeCodeContext(ctx);
  seen.contextsAfter = (await sbx.listCodeContexts()).length;
  seen.killed = await sbx.kill();
  seen.runningAfterKill = await sbx.isRunning();
  console.log(JSON.stringify(seen));
}

main().then(() => process.exit(0), (e) => { console.error(e && e.stack || e); process.exit(1); });
