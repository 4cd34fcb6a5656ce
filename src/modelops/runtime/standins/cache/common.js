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
  hardLink([from], to);
}

function hardLink(sources, dir) {
  if (sources.length) require("child_process").execFileSync("cp", ["-a", "--link", ...sources, dir]);
}

// Restore a saved venv into a job's workspace. What uv rewrites when it re-points the project's
// editable installs (bin/, every *.dist-info, the .pth and other files of site-packages) is
// hard-linked; each installed package's folder is a symlink into the entry, which no job writes
// to (the lock is the key: uv sync installs or removes nothing but the editables). A bare job
// (checkout, setup, one command) took ~8 CPU-s with all 56k files hard-linked, ~4.5 like this.
function restoreVenv(from, to) {
  const lib = path.join(from, "lib");
  const pythons = fs.existsSync(lib) ? fs.readdirSync(lib) : [];
  if (pythons.length !== 1 || !fs.existsSync(path.join(lib, pythons[0], "site-packages"))) {
    return copyTree(from, to, true);  // not the layout uv makes: link it all
  }
  fs.rmSync(to, { recursive: true, force: true });
  const site = path.join("lib", pythons[0], "site-packages");
  fs.mkdirSync(path.join(to, site), { recursive: true });
  hardLink(fs.readdirSync(from).filter((name) => name !== "lib").map((name) => path.join(from, name)), to);
  const rest = fs.readdirSync(path.join(lib, pythons[0])).filter((name) => name !== "site-packages");
  hardLink(rest.map((name) => path.join(lib, pythons[0], name)), path.join(to, "lib", pythons[0]));
  const linked = [];
  for (const item of fs.readdirSync(path.join(from, site), { withFileTypes: true })) {
    const abs = path.join(from, site, item.name);
    if (item.isDirectory() && !item.name.endsWith(".dist-info")) fs.symlinkSync(abs, path.join(to, site, item.name));
    else linked.push(abs);
  }
  hardLink(linked, path.join(to, site));
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

module.exports = { fs, path, input, lines, root, entry, linked, copyTree, restoreVenv, cachedPaths, append };
