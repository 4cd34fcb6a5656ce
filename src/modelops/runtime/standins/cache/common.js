// Shared by restore.js and save.js: inputs as the runner passes them, and where entries live.
const fs = require("fs");
const path = require("path");

const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] || "").trim();
const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
const root = path.join(process.env.MODELOPS_HARNESS_STATE, "cache");
const workspace = path.resolve(process.env.GITHUB_WORKSPACE || process.cwd());
// An entry is a directory per key; a key becomes a file name (the real service hashes it too).
const entry = (key) => path.join(root, encodeURIComponent(key));

// Paths inside the job's workspace are cached for real. Paths outside it (the runner's uv cache
// under $HOME) are this machine's own, shared by every job already: they are left alone.
function cachedPaths() {
  return lines(input("path"))
    .map((p) => path.resolve(workspace, p.replace(/^~(?=$|\/)/, process.env.HOME || "~")))
    .filter((p) => p === workspace || p.startsWith(workspace + path.sep))
    .map((p) => ({ abs: p, rel: path.relative(workspace, p) || "." }));
}

function append(file, line) {
  if (file) fs.appendFileSync(file, line + "\n");
}

module.exports = { fs, path, input, lines, root, entry, cachedPaths, append };
