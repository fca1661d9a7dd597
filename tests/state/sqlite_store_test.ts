/**
 * @module
 * Tests of the SQLite state store: round trips, crash safety, setting aside bad files,
 * reviving old or broken records, batched flushes, and the default state path per platform.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { type SqliteStateOptions, SqliteStateStore } from "../../src/state/sqlite_store.ts";
import { emptyBudget, emptyState } from "../../src/state_store.ts";
import type { Clock } from "../../src/clock.ts";

interface Line {
  level: "warn" | "info";
  msg: string;
  fields: Record<string, unknown> | undefined;
}

/** A logger that keeps its lines, and a fixed clock. */
function fakes(): { lines: Line[]; options: Required<SqliteStateOptions> } {
  const lines: Line[] = [];
  const clock: Clock = { now: () => 1_700_000_000_000, mono: () => 0 };
  const logger = {
    warn: (msg: string, fields?: Record<string, unknown>) =>
      lines.push({ level: "warn", msg, fields }),
    info: (msg: string, fields?: Record<string, unknown>) =>
      lines.push({ level: "info", msg, fields }),
  };
  return { lines, options: { clock, logger, flushMs: 60_000 } };
}

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sqlite_store_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs SQL on the file through a separate connection. */
function withDb<T>(path: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

function rowCount(path: string): number {
  return withDb(path, (db) => Number(db.prepare("SELECT count(*) AS n FROM candidates").get()?.n));
}

Deno.test("SqliteStateStore round-trips records through close and reopen, volatile fields cleared", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "nested", "state.sqlite");
    const { options } = fakes();
    const store = SqliteStateStore.open(path, options);
    const a = store.record("openai#1");
    Object.assign(a, {
      restUntil: 1_700_000_060_000,
      restReason: "rate_limited",
      ejections: 2,
      halfOpen: true,
      trialInFlight: true,
      inFlight: 3,
      requests: 42,
      lastError: "server",
      totalTokens: 1234,
    });
    a.budget.dayStart = 1_699_999_000_000;
    a.budget.dayRequests = 17;
    a.budget.modelRequests = { "gpt-4o": 10, "gpt-4o-mini": 7 };
    a.budget.learned = { remaining: 83, limit: 100, until: 1_700_086_400_000 };
    a.budget.learnedModels = { "gpt-4o": { remaining: 5, limit: 0, until: 1_700_000_100_000 } };
    a.budget.modelSpentUntil = { "o1": 1_700_050_000_000 };
    store.changed("openai#1");
    const b = store.record("openai#2");
    b.disabled = true;
    store.changed("openai#2");
    assert.equal(store.flush(), 2);
    await store.close();
    assert.equal((await Deno.stat(join(dir, "nested"))).mode! & 0o777, 0o700);

    const again = SqliteStateStore.open(path, options);
    try {
      const expected = structuredClone(a);
      expected.inFlight = 0;
      expected.trialInFlight = false;
      assert.deepEqual(again.record("openai#1"), expected);
      assert.equal(again.record("openai#1").halfOpen, true, "halfOpen kept");
      assert.deepEqual(again.record("openai#2"), { ...emptyState(), disabled: true });
      assert.deepEqual([...again.entries()].map(([id]) => id).sort(), ["openai#1", "openai#2"]);
    } finally {
      await again.close();
    }
  });
});

Deno.test("SqliteStateStore.record() returns the same live object; an unknown id starts empty", async () => {
  await inTempDir(async (dir) => {
    const store = SqliteStateStore.open(join(dir, "s.sqlite"), fakes().options);
    try {
      const rec = store.record("x");
      assert.deepEqual(rec, emptyState());
      rec.requests = 5;
      assert.equal(store.record("x"), rec);
      assert.equal(store.record("x").requests, 5);
      assert.notEqual(store.record("y"), rec);
      assert.equal(store.flush(), 0, "nothing changed, nothing written");
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore keeps flushed data when abandoned without close", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    const { options } = fakes();
    const first = SqliteStateStore.open(path, options);
    first.record("k").requests = 10;
    first.changed("k");
    first.flush();
    first.record("k").requests = 99; // never flushed
    first.changed("k");
    // the first store is abandoned: a second one opens the same file as a restart would
    const second = SqliteStateStore.open(path, options);
    try {
      assert.equal(second.record("k").requests, 10);
    } finally {
      await second.close();
      await first.close();
    }
  });
});

Deno.test("SqliteStateStore keeps flushed data when the process dies without closing", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    const module = import.meta.resolve("../../src/state/sqlite_store.ts");
    const code = `
      import { SqliteStateStore } from ${JSON.stringify(module)};
      const quiet = { warn() {}, info() {} };
      const store = SqliteStateStore.open(${JSON.stringify(path)}, { logger: quiet });
      store.record("k").requests = 10;
      store.changed("k");
      store.flush();
      store.record("k").requests = 99;
      store.changed("k");
      Deno.exit(0);
    `;
    const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "piped" })
      .output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const store = SqliteStateStore.open(path, fakes().options);
    try {
      assert.equal(store.record("k").requests, 10);
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore.open() sets a file that is not a database aside and starts fresh", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    await Deno.writeFile(path, crypto.getRandomValues(new Uint8Array(8192)));
    const { lines, options } = fakes();
    const store = SqliteStateStore.open(path, options);
    try {
      const aside = `${path}.corrupt-1700000000000`;
      assert.ok((await Deno.stat(aside)).isFile);
      const warn = lines.find((l) => l.level === "warn");
      assert.equal(warn?.msg, "state file set aside, starting with fresh state");
      assert.equal(warn?.fields?.path, path);
      assert.equal(warn?.fields?.aside, aside);
      store.record("k").requests = 1;
      store.changed("k");
      assert.equal(store.flush(), 1);
      assert.equal(rowCount(path), 1);
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore.open() sets aside a database of another schema version, WAL and all", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    // a newer version wrote in WAL mode and died: its last rows are only in the -wal file
    const code = `
      import { DatabaseSync } from "node:sqlite";
      const db = new DatabaseSync(${JSON.stringify(path)});
      db.exec("PRAGMA journal_mode = WAL; PRAGMA user_version = 7; CREATE TABLE future(x)");
      db.exec("INSERT INTO future VALUES (1), (2), (3)");
      Deno.exit(0);
    `;
    assert.ok((await new Deno.Command(Deno.execPath(), { args: ["eval", code] }).output()).success);
    assert.ok((await Deno.stat(`${path}-wal`)).size > 0);
    const { lines, options } = fakes();
    const store = SqliteStateStore.open(path, options);
    try {
      const aside = `${path}.v7-1700000000000`;
      assert.equal(lines.find((l) => l.level === "warn")?.fields?.aside, aside);
      withDb(aside, (db) => {
        assert.equal(db.prepare("PRAGMA user_version").get()?.user_version, 7);
        assert.equal(db.prepare("SELECT count(*) AS n FROM future").get()?.n, 3);
      });
      assert.equal(withDb(path, (db) => db.prepare("PRAGMA user_version").get()?.user_version), 1);
      assert.equal(rowCount(path), 0);
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore.open() sets aside a database whose pages are corrupt", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    withDb(path, (db) => {
      db.exec("BEGIN; CREATE TABLE t(x); CREATE INDEX i ON t(x)");
      for (let i = 0; i < 2000; i++) db.exec("INSERT INTO t VALUES (randomblob(100))");
      db.exec("COMMIT");
    });
    const bytes = await Deno.readFile(path);
    bytes.fill(0xab, 8192, bytes.length - 4096);
    await Deno.writeFile(path, bytes);
    const { options } = fakes();
    const store = SqliteStateStore.open(path, options);
    await store.close();
    assert.ok((await Deno.stat(`${path}.corrupt-1700000000000`)).isFile);
  });
});

/** Creates a version-1 file and writes rows to it by hand. */
async function writeRows(path: string, rows: Record<string, string>): Promise<void> {
  await SqliteStateStore.open(path, fakes().options).close();
  withDb(path, (db) => {
    const insert = db.prepare("INSERT INTO candidates (id, state, updated_at) VALUES (?, ?, 0)");
    for (const [id, state] of Object.entries(rows)) insert.run(id, state);
  });
}

Deno.test("SqliteStateStore.open() fills fields an older version did not save with defaults", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    await writeRows(path, {
      old: JSON.stringify({ requests: 7, restUntil: 5, inFlight: 2, gone: "x" }),
      partial: JSON.stringify({ budget: { dayRequests: 3, modelRequests: { m: 3 } } }),
    });
    const { lines, options } = fakes();
    const store = SqliteStateStore.open(path, options);
    try {
      assert.deepEqual(store.record("old"), { ...emptyState(), requests: 7, restUntil: 5 });
      assert.deepEqual(store.record("partial").budget, {
        ...emptyBudget(),
        dayRequests: 3,
        modelRequests: { m: 3 },
      });
      assert.deepEqual(lines.filter((l) => l.level === "warn"), []);
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore.open() starts a record with broken JSON empty and loads the others", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    await writeRows(path, {
      broken: '{"requests": 7,',
      notAnObject: "[1, 2]",
      wrongTypes: JSON.stringify({ requests: "7", failures: 2, budget: { dayTokens: null } }),
      fine: JSON.stringify({ ...emptyState(), requests: 3 }),
    });
    const { lines, options } = fakes();
    const store = SqliteStateStore.open(path, options);
    try {
      assert.deepEqual(store.record("broken"), emptyState());
      assert.deepEqual(store.record("notAnObject"), emptyState());
      assert.deepEqual(store.record("wrongTypes"), { ...emptyState(), failures: 2 });
      assert.equal(store.record("fine").requests, 3);
      const warns = lines.filter((l) => l.level === "warn");
      assert.deepEqual(warns.map((l) => l.fields?.id), ["broken", "notAnObject", "wrongTypes"]);
      assert.match(warns[0]!.msg, /^cannot read a saved state record/);
      assert.deepEqual(warns[2]!.fields?.fields, ["requests", "budget.dayTokens"]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore.flush() writes 1,000 dirty records of 10,000 changes in one go", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    const store = SqliteStateStore.open(path, fakes().options);
    try {
      for (let i = 0; i < 10_000; i++) {
        const id = `u#${i % 1000}`;
        const rec = store.record(id);
        rec.requests++;
        rec.budget.modelRequests["gpt-4o"] = rec.requests;
        store.changed(id);
      }
      const started = performance.now();
      const written = store.flush();
      const ms = performance.now() - started;
      assert.equal(written, 1000);
      assert.ok(ms < 1000, `flush took ${ms.toFixed(1)} ms`);
      assert.equal(store.flush(), 0, "nothing left dirty");
      assert.equal(rowCount(path), 1000);
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore flushes on its timer", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    const store = SqliteStateStore.open(path, { ...fakes().options, flushMs: 50 });
    try {
      store.record("k").requests = 1;
      store.changed("k");
      const deadline = Date.now() + 1500;
      while (rowCount(path) === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.equal(rowCount(path), 1);
    } finally {
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore.flush() logs a failed write once and retries at the next flush", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    const { lines, options } = fakes();
    const store = SqliteStateStore.open(path, options);
    const locker = new DatabaseSync(path);
    try {
      locker.exec("BEGIN IMMEDIATE"); // holds the write lock: our writes fail as busy
      store.record("k").requests = 1;
      store.changed("k");
      assert.equal(store.flush(), 0);
      store.record("j").requests = 2;
      store.changed("j");
      assert.equal(store.flush(), 0);
      const warns = lines.filter((l) => l.level === "warn");
      assert.equal(warns.length, 1);
      assert.equal(warns[0]!.msg, "cannot save state, retrying at the next flush");
      assert.equal(warns[0]!.fields?.path, path);
      locker.exec("ROLLBACK");
      assert.equal(store.flush(), 2);
      assert.equal(lines.at(-1)?.msg, "state saved again");
      assert.equal(rowCount(path), 2);
    } finally {
      locker.close();
      await store.close();
    }
  });
});

Deno.test("SqliteStateStore.close() flushes, and a second close does nothing", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "s.sqlite");
    const store = SqliteStateStore.open(path, fakes().options);
    store.record("k").requests = 4;
    store.changed("k");
    await store.close();
    await store.close();
    store.changed("k");
    assert.equal(store.flush(), 0, "a closed store writes nothing");
    assert.equal(rowCount(path), 1);
  });
});

Deno.test("SqliteStateStore.open() throws naming the path when the folder cannot be created", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "file"), "");
    const path = join(dir, "file", "s.sqlite");
    assert.throws(
      () => SqliteStateStore.open(path, fakes().options),
      (e: unknown) =>
        e instanceof Error && e.message.startsWith(`Cannot create the state folder "${dir}/file":`),
    );
  });
});

Deno.test("SqliteStateStore.open() throws, and sets nothing aside, when the path cannot be opened", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "a-folder");
    await Deno.mkdir(path);
    assert.throws(
      () => SqliteStateStore.open(path, fakes().options),
      (e: unknown) =>
        e instanceof Error && e.message.startsWith(`Cannot open the state file "${path}":`),
    );
    assert.ok((await Deno.stat(path)).isDirectory);
  });
});

Deno.test({
  name: "SqliteStateStore.open() throws naming the path when it cannot write there",
  ignore: Deno.build.os === "windows" || Deno.uid() === 0, // root writes anywhere
  fn: async () => {
    await inTempDir(async (dir) => {
      const locked = join(dir, "locked");
      await Deno.mkdir(locked, { mode: 0o500 });
      const inLocked = join(locked, "s.sqlite");
      const readOnly = join(dir, "read-only.sqlite");
      await SqliteStateStore.open(readOnly, fakes().options).close();
      await Deno.chmod(readOnly, 0o400);
      try {
        for (const path of [inLocked, readOnly]) {
          assert.throws(
            () => SqliteStateStore.open(path, fakes().options),
            (e: unknown) =>
              e instanceof Error && e.message.startsWith(`Cannot open the state file "${path}":`),
          );
        }
        const names = [...Deno.readDirSync(dir)].map((e) => e.name);
        assert.deepEqual(names.filter((n) => n.includes(".corrupt-")), [], "nothing set aside");
      } finally {
        await Deno.chmod(locked, 0o700);
      }
    });
  },
});
