// Shared by restore.js and save.js: inputs as the runner passes them, and where entries live.
const fs = require("fs");
const path = require("path");

const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] || "").trim();
const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
const root = path.join(process.env.MODELOPS_HARNESS_STATE, "cache");
const workspace = path.resolve(process.env.GITHUB_WORKSPACE || process.cwd());
// A job's venv (keys "venv-...") depends on uv.lock and this machine only: with
// $MODELOPS_HARNESS_VENV_CACHE set (the test session does), every forge shares those entries, as one
// repository's runs share its cache on GitHub. They are linked, not copied (1.2 GB, 39k files):
// nothing writes into a venv's files in place (uv and Python replace files).
const venvRoot = process.env.MODELOPS_HARNESS_VENV_CACHE || root;
const linked = (key) => key.startsWith("venv-");
// An entry is a directory per key; a key becomes a file name (the real service hashes it too).
const entry = (key) => path.join(linked(key) ? venvRoot : root, encodeURIComponent(key));

// Copy (or hard-link) a saved or cached tree, keeping mtimes (Python checks bytecode against them).
function copyTree(from, to, link) {
  if (!link) return fs.cpSync(from, to, { recursive: true, force: true, preserveTimestamps: true, verbatimSymlinks: true });
  fs.rmSync(to, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(to), { recursive: true });
  require("child_process").execFileSync("cp", ["-a", "--link", from, to]);
}

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

module.exports = { fs, path, input, lines, root, entry, linked, copyTree, cachedPaths, append };
