// Painting and undo (spade_rt/serve/static/labelmap.js) against plain definitions written here: a disc is
// every pixel within r, a fill is the 4-connected component found by a breadth-first search; undo/redo restore
// the exact maps that were there, up to the history limit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HISTORY, History, fill, line, stamp } from "../../spade_rt/serve/static/labelmap.js";
import { rng } from "./reference.mjs";

const W = 23, H = 17;

test("a stamp is the disc of radius r, clipped at the edges", () => {
  for (const [cx, cy, r] of [[5, 5, 0], [0, 0, 3], [22, 16, 4], [11, 8, 6], [-2, 3, 3]]) {
    const ids = new Uint8Array(W * H);
    stamp(ids, W, H, cx, cy, r, 7);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        assert.equal(ids[y * W + x], (x - cx) ** 2 + (y - cy) ** 2 <= r * r ? 7 : 0, `(${x}, ${y}) for ${cx},${cy} r${r}`);
      }
    }
  }
});

test("a line of radius 0 is connected and ends at b; a line of no length is one disc", () => {
  const ids = new Uint8Array(W * H);
  line(ids, W, H, { x: 1, y: 2 }, { x: 20, y: 9 }, 0, 3);
  const painted = [];
  for (let i = 0; i < ids.length; i++) if (ids[i]) painted.push([i % W, Math.floor(i / W)]);
  assert.equal(painted.length, 19); // one pixel per step of the longer axis, a excluded
  assert.equal(ids[9 * W + 20], 3);
  assert.equal(ids[2 * W + 1], 0);
  for (const [x, y] of painted) {
    const near = painted.some(([u, v]) => (u !== x || v !== y) && Math.abs(u - x) <= 1 && Math.abs(v - y) <= 1);
    assert.ok(near || (x === 2 && y === 2), `(${x}, ${y}) is not connected`);
  }
  const one = new Uint8Array(W * H), disc = new Uint8Array(W * H);
  line(one, W, H, { x: 4, y: 4 }, { x: 4, y: 4 }, 2, 5);
  stamp(disc, W, H, 4, 4, 2, 5);
  assert.deepEqual(one, disc);
});

function bfsFill(ids, x, y, c) { // the reference: breadth-first over 4-neighbours of the same id
  const out = ids.slice(), target = ids[y * W + x];
  if (target === c) return out;
  const seen = new Uint8Array(W * H), queue = [[x, y]];
  seen[y * W + x] = 1;
  while (queue.length) {
    const [px, py] = queue.shift();
    out[py * W + px] = c;
    for (const [nx, ny] of [[px + 1, py], [px - 1, py], [px, py + 1], [px, py - 1]]) {
      if (nx < 0 || ny < 0 || nx >= W || ny >= H || seen[ny * W + nx] || ids[ny * W + nx] !== target) continue;
      seen[ny * W + nx] = 1;
      queue.push([nx, ny]);
    }
  }
  return out;
}

test("fill changes exactly the 4-connected region of the clicked id", () => {
  const random = rng(1);
  for (let k = 0; k < 40; k++) {
    const ids = new Uint16Array(W * H).map(() => Math.floor(random() * 3)); // small regions that touch diagonally
    const x = Math.floor(random() * W), y = Math.floor(random() * H), c = Math.floor(random() * 4);
    const want = bfsFill(ids, x, y, c), got = ids.slice();
    assert.equal(fill(got, W, H, x, y, c), ids[y * W + x] !== c);
    assert.deepEqual(got, want);
  }
});

test("undo and redo restore the maps that were there; a new edit forgets redo; the history is bounded", () => {
  const ids = new Uint8Array(W * H), h = new History(), maps = [ids.slice()];
  assert.equal(h.undo(ids), false);
  for (let k = 1; k <= 5; k++) {
    h.remember(ids);
    stamp(ids, W, H, 3 * k, 8, 2, k);
    maps.push(ids.slice());
  }
  for (let k = 4; k >= 0; k--) { assert.ok(h.undo(ids)); assert.deepEqual(ids, maps[k]); }
  assert.equal(h.canUndo, false);
  for (let k = 1; k <= 3; k++) { assert.ok(h.redo(ids)); assert.deepEqual(ids, maps[k]); }
  h.remember(ids); // a new edit
  ids.fill(9);
  assert.equal(h.canRedo, false);
  assert.ok(h.undo(ids));
  assert.deepEqual(ids, maps[3]);
  const small = new History(3), m = new Uint8Array(4);
  for (let k = 1; k <= 10; k++) { small.remember(m); m.fill(k); }
  let steps = 0;
  while (small.undo(m)) steps++;
  assert.equal(steps, 3);
  assert.deepEqual(Array.from(m), [7, 7, 7, 7]); // the oldest kept state
  assert.equal(HISTORY, 100);
});
