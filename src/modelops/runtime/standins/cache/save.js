// Save after a successful job when the key missed; an existing entry is never overwritten.
const { fs, path, input, entry, linked, copyTree, cachedPaths } = require("./common");

const key = input("key");
const dest = entry(key);
if (process.env.STATE_hit === "true" || fs.existsSync(dest)) {
  console.log(`cache stand-in: ${key} already saved`);
  process.exit(0);
}
const paths = cachedPaths().filter((p) => fs.existsSync(p.abs));
if (!paths.length) {
  console.log(`cache stand-in: nothing to save for ${key}`);
  process.exit(0);
}
const tmp = `${dest}.tmp-${process.pid}`;
fs.mkdirSync(path.dirname(dest), { recursive: true });
for (const p of paths) copyTree(p.abs, path.join(tmp, p.rel), linked(key));
try {
  fs.renameSync(tmp, dest);
} catch (err) {  // another job saved the same key first: keep that one
  if (!fs.existsSync(dest)) throw err;
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(`cache stand-in: saved ${key}`);
