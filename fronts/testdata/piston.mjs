// Runs piston-client's documented calls, unchanged, against a server:
//   node piston.mjs <server> <cases JSON>
// where each case is {language, code, options?}. Prints one JSON line:
// {runtimes, results: [...]} with each call's answer as the client returns it.
import piston from "piston-client";

const [server, casesJSON] = process.argv.slice(2);
const client = piston({ server });
const runtimes = await client.runtimes();
const results = [];
for (const c of JSON.parse(casesJSON)) {
  results.push(c.options === undefined
    ? await client.execute(c.language, c.code)
    : await client.execute(c.language, c.code, c.options));
}
console.log(JSON.stringify({ runtimes, results }));
