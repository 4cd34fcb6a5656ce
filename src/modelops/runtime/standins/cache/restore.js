// Restore: the exact key, else the newest entry whose key starts with a restore-keys prefix.
const { fs, path, input, lines, entry, linked, copyTree, restoreVenv, cachedPaths, append } = require("./common");

const key = input("key");
const paths = input("path");
if (!paths) { console.log("::error::Input required and not supplied: path"); process.exit(1); }
if (!key) { console.log("::error::Input required and not supplied: key"); process.exit(1); }

let found = null;
let exact = false;
if (fs.existsSync(entry(key))) {
  found = entry(key);
  exact = true;
} else if (fs.existsSync(path.dirname(entry(key)))) {
  const dir = path.dirname(entry(key));
  for (const prefix of lines(input("restore-keys"))) {
    const matches = fs.readdirSync(dir)
      .filter((name) => decodeURIComponent(name).startsWith(prefix))
      .map((name) => path.join(dir, name))
      .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
    if (matches.length) { found = matches[0]; break; }
  }
}
if (found) {
  for (const p of cachedPaths()) {
    const saved = path.join(found, p.rel);
    if (!fs.existsSync(saved)) continue;
    if (linked(key)) restoreVenv(saved, p.abs);
    else copyTree(saved, p.abs, false);
  }
  console.log(`cache stand-in: ${exact ? "hit" : "restored from"} ${decodeURIComponent(path.basename(found))}`);
} else {
  console.log(`cache stand-in: miss for key ${key}`);
}
append(process.env.GITHUB_OUTPUT, `cache-hit=${exact}`);
append(process.env.GITHUB_STATE, `hit=${exact}`);
if (!exact && input("fail-on-cache-miss") === "true") {
  console.log(`::error::Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: ${key}`);
  process.exit(1);
}
