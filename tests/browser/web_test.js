// Browser test of the web page of `hwyquant serve`: real Chromium (Debian's, via playwright-core)
// against the built binary on 127.0.0.1 with a throwaway data directory.
//
//   node web_test.js --hwyquant BUILD/pipeline/hwyquant --shared ../shared --out BUILD/browser
//
// Screenshots go to OUT/screenshots (never the source tree); DOM assertions are made at the moment
// each screenshot is taken, so a picture and its checks show the same state.
'use strict';

const {spawn, execFileSync} = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const {chromium} = require('playwright-core');

// ---------------------------------------------------------------------------------------------
// Arguments and limits.

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(hwyquant|shared|out|chromium|only)$/.exec(argv[i]);
    if (!m || i + 1 >= argv.length) throw new Error(`usage: web_test.js --hwyquant BIN --shared DIR --out DIR [--chromium BIN] [--only NAME]; bad argument '${argv[i]}'`);
    args[m[1]] = argv[++i];
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const HWYQUANT = path.resolve(args.hwyquant || '');
const SHARED = path.resolve(args.shared || process.env.HWYQUANT_SHARED || path.join(__dirname, '../../../shared'));
const OUT = path.resolve(args.out || path.join(os.tmpdir(), 'hwyquant-browser-test'));
const CHROMIUM = args.chromium || process.env.HWYQUANT_CHROMIUM || '/usr/bin/chromium';
const MODEL = path.join(SHARED, 'models', 'stories260K');
const SHOTS = path.join(OUT, 'screenshots');
const API_KEY = 'web-test-key-' + process.pid;
// Slows every progress event of the child processes so the bar is seen moving and Stop can act
// while a job runs (a real model takes minutes; stories260K would finish in milliseconds).
const PROGRESS_DELAY_MS = '60';
const TEST_TIMEOUT_MS = 150000;
const WATCHDOG_MS = 540000;

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}

// ---------------------------------------------------------------------------------------------
// Servers and processes; everything started is stopped on exit, also on a watchdog timeout.

const children = new Set();
const tempDirs = [];

function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

function killAll() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch (_) { /* already gone */ }
  }
}

async function startServer(name, {apiKey, env, port = 0, dataDir} = {}) {
  dataDir = dataDir || tempDir(`hwyquant-web-${name}-`);
  const argv = ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir];
  if (apiKey) argv.push('--api-key', apiKey);
  const logPath = path.join(OUT, `server-${name}.log`);
  const log = fs.createWriteStream(logPath, {flags: 'a'});
  const child = spawn(HWYQUANT, argv, {
    env: Object.assign({}, process.env, {HWYQUANT_API_KEY: ''}, env || {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.stderr.pipe(log);
  const base = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Failure(`${name} server did not print its address within 20 s (log: ${logPath})`)), 20000);
    child.stdout.on('data', (chunk) => {
      log.write(chunk);
      out += chunk;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Failure(`${name} server exited (code ${code}, signal ${signal}) before listening; log: ${logPath}`));
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Failure(`cannot start ${HWYQUANT}: ${e.message}`));
    });
  });
  child.removeAllListeners('exit');
  return {
    name, base, dataDir, child, logPath,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
      await gone;
      clearTimeout(timer);
      children.delete(child);
    },
  };
}

function httpGet(url, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, {headers, timeout: 10000}, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks)}));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

function httpPostJson(url, value) {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify(value));
    const req = http.request(url, {method: 'POST', timeout: 10000,
      headers: {'Content-Type': 'application/json', 'Content-Length': body.length}}, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({status: res.statusCode, body: Buffer.concat(chunks)}));
    });
    req.on('timeout', () => req.destroy(new Error(`POST ${url}: timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

const referenceCache = new Map();
// What `hwyquant run` writes for the same model and type: the bytes a download must equal.
function referenceOutput(type) {
  if (referenceCache.has(type)) return referenceCache.get(type);
  const dir = tempDir('hwyquant-web-ref-');
  const out = path.join(dir, `ref-${type}.gguf`);
  execFileSync(HWYQUANT, ['run', MODEL, type, '-o', out], {stdio: ['ignore', 'ignore', 'pipe'], timeout: 120000});
  const bytes = fs.readFileSync(out);
  referenceCache.set(type, bytes);
  return bytes;
}

function ggufTensorCount(bytes) {
  check(bytes.length >= 24 && bytes.toString('latin1', 0, 4) === 'GGUF', 'downloaded file does not start with GGUF magic');
  return Number(bytes.readBigUInt64LE(8));
}

// ---------------------------------------------------------------------------------------------
// Pages: console errors fail a test, except HTTP error statuses the test provokes on purpose.

let browser;

async function openPage(t, {viewport = {width: 1280, height: 900}, allowStatuses = [], allowNetErrors = false} = {}) {
  const context = await browser.newContext({acceptDownloads: true, viewport});
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const m = /^Failed to load resource: the server responded with a status of (\d+)/.exec(msg.text());
    if (m && allowStatuses.includes(Number(m[1]))) return;
    if (allowNetErrors && /^Failed to load resource: net::ERR_/.test(msg.text())) return;
    problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  t.cleanups.push(async () => {
    await context.close();
  });
  t.cleanups.push(() => {
    if (problems.length) throw new Failure(`browser reported errors:\n  ${problems.join('\n  ')}`);
  });
  return page;
}

async function shot(t, page, name, fullPage = true) {
  fs.mkdirSync(SHOTS, {recursive: true});
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({path: file, fullPage});
  t.log(`screenshot ${file}`);
  return file;
}

// The card's visible state in one read.
function cardState(card) {
  return card.evaluate((el) => ({
    status: el.dataset.status,
    valueNow: Number(el.querySelector('[role=progressbar]').getAttribute('aria-valuenow')),
    percent: el.querySelector('.percent').textContent,
    width: el.querySelector('.bar-fill').style.width,
    badge: el.querySelector('.badge').textContent,
    stage: el.querySelector('.stage').textContent,
    tensor: el.querySelector('.tensor').textContent,
    throughput: el.querySelector('.throughput').textContent,
    eta: el.querySelector('.eta').textContent,
    log: el.querySelector('.log').textContent,
    stopVisible: !el.querySelector('button.danger').hidden,
  }));
}

async function submitJob(page, model, type) {
  const before = await page.locator('#cards .card').count();
  await page.fill('#model', model);
  if (type) await page.selectOption('#qtype', type);
  await page.click('#submit');
  await page.waitForFunction((n) => document.querySelectorAll('#cards .card').length > n, before);
  const card = page.locator('#cards .card').first();
  return {card, id: await card.getAttribute('data-job-id')};
}

async function waitTerminal(card, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await cardState(card);
    if (['completed', 'failed', 'stopped'].includes(s.status)) return s;
    check(Date.now() < deadline, `job did not finish within ${timeoutMs} ms; last state ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

function row(page, id) {
  return page.locator(`#jobs-body tr[data-job-id="${id}"]`);
}

// ---------------------------------------------------------------------------------------------
// Tests.

let serverA;  // no API key, slowed progress
let serverB;  // with an API key

const tests = [];
function test(name, fn) {
  tests.push({name, fn});
}

test('job runs to 100%, download equals hwyquant run, quality view, import, delete', async (t) => {
  const page = await openPage(t);
  await page.goto(serverA.base + '/');
  await page.waitForFunction(() => document.querySelector('#no-jobs').textContent === 'No jobs yet.');
  const presets = await page.$$eval('#qtype option', (os) => os.map((o) => o.value));
  const wanted = ['Q2_K', 'Q3_K_S', 'Q3_K_M', 'Q3_K_L', 'Q4_0', 'Q4_1', 'Q4_K_S', 'Q4_K_M', 'Q5_0', 'Q5_1',
    'Q5_K_S', 'Q5_K_M', 'Q6_K', 'Q8_0', 'F16', 'BF16', 'F32'];
  for (const p of wanted) check(presets.includes(p), `type dropdown lacks ${p}: ${presets}`);
  check(presets.includes('custom'), 'type dropdown has no free-text choice');
  // The backends line appears once GET /backends answered (after the job list).
  await page.waitForFunction(() => document.querySelector('#server-info').textContent.includes('hwyquant'),
      null, {timeout: 10000}).catch(() => {});
  check((await page.textContent('#server-info')).includes('hwyquant'), 'backends line does not name hwyquant');

  const type = 'Q4_K_M';
  const {card, id} = await submitJob(page, MODEL, type);
  check(/^[0-9a-f-]{36}$/.test(id), `card has no job id: ${id}`);
  const seen = [];
  let midShot = null;
  const deadline = Date.now() + 120000;
  let s;
  for (;;) {
    s = await cardState(card);
    seen.push(s.valueNow);
    if (!midShot && s.valueNow > 0 && s.valueNow < 100 && /\(\d+\/\d+\)/.test(s.tensor) && s.log) {
      // Checked and pictured together: a running job shows every part of its card.
      // Text, bar width and aria-valuenow all show the same percentage.
      check(/^\d+(\.\d)?%$/.test(s.percent) && Math.abs(parseFloat(s.percent) - s.valueNow) <= 0.5 &&
          Math.abs(parseFloat(s.width) - parseFloat(s.percent)) <= 0.05, `percent text ${s.percent}, width ${s.width}, aria ${s.valueNow}`);
      check(s.eta !== '—' && s.throughput !== '—', `running card lacks ETA or throughput: ${s.eta}, ${s.throughput}`);
      check(/^(converting|quantizing)/.test(s.stage), `stage shows ${s.stage}`);
      check(/\.weight|token_embd|output/.test(s.tensor), `tensor shows ${s.tensor}`);
      check(s.stopVisible, 'Stop is not offered on a running job');
      check(s.log.split('\n').length >= 1, 'no log lines');
      midShot = await shot(t, page, '01-job-running');
      t.log(`running: ${JSON.stringify(s)}`);
    }
    if (['completed', 'failed', 'stopped'].includes(s.status)) break;
    check(Date.now() < deadline, `job did not finish within 120 s: ${JSON.stringify(s)}`);
    await sleep(40);
  }
  check(s.status === 'completed', `job ended ${s.status}: ${s.log}`);
  check(midShot, `never saw the running card with a tensor and a percentage between 0 and 100 (values seen: ${[...new Set(seen)].join(', ')})`);
  for (let i = 1; i < seen.length; i++) check(seen[i] >= seen[i - 1], `progress went backwards: ${seen[i - 1]} -> ${seen[i]}`);
  check(new Set(seen.filter((v) => v > 0 && v < 100)).size >= 3, `progress moved in fewer than 3 steps: ${[...new Set(seen)]}`);
  check(s.valueNow === 100 && s.percent === '100%' && s.width === '100%', `finished card shows ${JSON.stringify(s)}`);
  check(/^done in /.test(s.eta), `finished card ETA shows ${s.eta}`);

  const r = row(page, id);
  await r.locator('td[data-label=Status] .badge', {hasText: 'completed'}).waitFor();
  const cells = await r.locator('td').allTextContents();
  t.log(`row: ${JSON.stringify(cells)}`);
  check(cells[0] === MODEL, `model cell ${cells[0]}`);
  check(cells[1] === type, `type cell ${cells[1]}`);
  check(/^\d+(\.\d+)? (KB|MB)$/.test(cells[4]), `size cell ${cells[4]}`);
  check(/^\d+\.\d\d$/.test(cells[5]), `bits/weight cell ${cells[5]}`);
  await shot(t, page, '02-job-completed');

  // Download through the page and compare with `hwyquant run` of the same model and type.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    r.getByRole('link', {name: /^Download/}).click(),
  ]);
  const dlPath = path.join(tempDir('hwyquant-web-dl-'), download.suggestedFilename());
  await download.saveAs(dlPath);
  const got = fs.readFileSync(dlPath);
  const want = referenceOutput(type);
  check(got.length === want.length, `download has ${got.length} bytes, hwyquant run wrote ${want.length}`);
  check(got.equals(want), 'downloaded bytes differ from hwyquant run output');
  check(/\.gguf$/.test(download.suggestedFilename()), `download name ${download.suggestedFilename()}`);
  const tensors = ggufTensorCount(got);
  t.log(`download ${download.suggestedFilename()}: ${got.length} bytes, ${tensors} tensors, equal to hwyquant run`);

  // Quality view: one table row and one chart bar per tensor; sortable.
  await r.getByRole('button', {name: /^Quality/}).click();
  await page.waitForSelector('#quality:not([hidden])');
  await page.waitForFunction(() => document.querySelectorAll('#quality-body tr').length > 0 ||
      document.querySelector('#quality-summary').classList.contains('error'), null, {timeout: 15000});
  const summary = await page.textContent('#quality-summary');
  check(!(await page.locator('#quality-summary.error').count()), `quality view failed: ${summary}`);
  const q = await page.evaluate(() => ({
    rows: [...document.querySelectorAll('#quality-body tr')].map((tr) => [...tr.cells].map((c) => c.textContent)),
    heads: [...document.querySelectorAll('#quality-head th')].map((th) => th.textContent),
    bars: document.querySelectorAll('#quality-charts svg rect.err-bar').length,
    charts: document.querySelectorAll('#quality-charts svg').length,
  }));
  t.log(`quality: ${summary}; ${q.rows.length} rows, heads ${q.heads.join('|')}`);
  check(q.rows.length === tensors, `quality table has ${q.rows.length} rows, the file has ${tensors} tensors`);
  check(q.bars === tensors && q.charts === 2, `charts: ${q.charts} svgs, ${q.bars} bars`);
  const col = (name) => q.heads.findIndex((h) => h.startsWith(name));
  for (const name of ['Tensor', 'Type', 'Bits/weight', 'RMSE', 'Max abs error', 'Rel. output error']) {
    check(col(name) >= 0, `quality table lacks column ${name}`);
  }
  const types = new Set(q.rows.map((cells) => cells[col('Type')]));
  check([...types].every((x) => /^(F32|F16|BF16|Q\d_K|Q\d_[01]|IQ\d_\w+)$/.test(x)), `unexpected types ${[...types]}`);
  const quantizedRows = q.rows.filter((cells) => /^Q/.test(cells[col('Type')]));
  check(quantizedRows.length > 0, 'no quantized tensor in the quality table');
  check(quantizedRows.every((cells) => Number(cells[col('RMSE')]) > 0), 'a quantized tensor shows no RMSE');
  await shot(t, page, '03-quality');

  const rmseValues = async () => page.$$eval('#quality-body tr', (trs, c) => trs.map((tr) => Number(tr.cells[c].textContent)), col('RMSE'));
  await page.click('#quality-head button[data-key=rmse]');
  check(await page.getAttribute('#quality-head th:has(button[data-key=rmse])', 'aria-sort') === 'descending', 'RMSE column not sorted descending after one press');
  let v = (await rmseValues()).filter((x) => !Number.isNaN(x));
  for (let i = 1; i < v.length; i++) check(v[i] <= v[i - 1], `RMSE not descending at row ${i}: ${v[i - 1]} then ${v[i]}`);
  check(await page.evaluate(() => document.activeElement.dataset.key) === 'rmse', 'focus left the sort button');
  await page.keyboard.press('Enter');  // the same button, by keyboard
  check(await page.getAttribute('#quality-head th:has(button[data-key=rmse])', 'aria-sort') === 'ascending', 'RMSE column not ascending after a second press');
  v = (await rmseValues()).filter((x) => !Number.isNaN(x));
  for (let i = 1; i < v.length; i++) check(v[i] >= v[i - 1], `RMSE not ascending at row ${i}`);
  await page.click('#quality-close');
  check(await page.locator('#quality').isHidden(), 'quality view did not close');

  // Import under a chosen name.
  await r.getByRole('button', {name: /^Import/}).click();
  await page.waitForSelector('#import-dialog[open]');
  await page.fill('#import-name', 'stories-web-test');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#notices').textContent.includes('Imported as stories-web-test'));
  await r.getByText('imported as stories-web-test').waitFor();
  check(fs.existsSync(path.join(serverA.dataDir, 'models', 'stories-web-test.yaml')), 'import wrote no model config');

  // Delete takes two presses; the job and its files go.
  const del = r.getByRole('button', {name: /^Delete/});
  await del.click();
  await r.getByRole('button', {name: /^Confirm: delete/}).waitFor();
  await r.getByRole('button', {name: /^Confirm: delete/}).click();
  await r.waitFor({state: 'detached'});
  check(!fs.existsSync(path.join(serverA.dataDir, 'jobs', id)), 'job directory still there after delete');
  const alerts = await page.textContent('#alerts');
  check(alerts.trim() === '', `error messages shown: ${alerts}`);
});

test('a job created without statistics offers no quality view', async (t) => {
  const created = await httpPostJson(`${serverA.base}/api/quantization/jobs`,
      {model: MODEL, quantization_type: 'q8_0', extra_options: {stats: 'false'}});
  check(created.status === 201, `create answered HTTP ${created.status}: ${created.body}`);
  const {id} = JSON.parse(created.body.toString());
  const deadline = Date.now() + 60000;
  let status = '';
  while (Date.now() < deadline && !['completed', 'failed', 'stopped'].includes(status)) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    status = JSON.parse((await httpGet(`${serverA.base}/api/quantization/jobs/${id}`)).body).status;
  }
  check(status === 'completed', `job ended ${status}`);
  const page = await openPage(t);
  await page.goto(serverA.base + '/');
  const row = page.locator(`#jobs-body tr[data-job-id="${id}"]`);
  await row.getByRole('link', {name: /^Download/}).waitFor();
  check(await row.getByRole('button', {name: /^Quality/}).count() === 0, 'quality button on a job without statistics');
  check(await row.getByRole('button', {name: /^Import/}).count() === 1, 'no import button on a completed job');
});

test('stop a running job', async (t) => {
  const page = await openPage(t);
  await page.goto(serverA.base + '/');
  await page.waitForSelector('#job-form');
  const {card, id} = await submitJob(page, MODEL, 'Q8_0');
  const deadline = Date.now() + 60000;
  let s;
  for (;;) {
    s = await cardState(card);
    if (s.valueNow > 0 && ['converting', 'quantizing'].includes(s.status)) break;
    check(!['completed', 'failed', 'stopped'].includes(s.status), `job ended ${s.status} before it could be stopped`);
    check(Date.now() < deadline, `job never started running: ${JSON.stringify(s)}`);
    await sleep(40);
  }
  const pctAtStop = s.valueNow;
  await card.getByRole('button', {name: /^Stop/}).click();
  s = await waitTerminal(card, 20000);
  check(s.status === 'stopped', `job ended ${s.status} after Stop`);
  check(!s.stopVisible, 'Stop still offered on a stopped job');
  check(s.valueNow < 100 && s.valueNow >= pctAtStop, `stopped job shows ${s.valueNow}% (was ${pctAtStop}% at Stop)`);
  const r = row(page, id);
  await r.locator('.badge', {hasText: 'stopped'}).waitFor();
  check(await r.getByRole('link', {name: /^Download/}).count() === 0, 'a stopped job offers a download');
  check(await r.getByRole('button', {name: /^Delete/}).count() === 1, 'a stopped job cannot be deleted');
  const api = JSON.parse((await httpGet(`${serverA.base}/api/quantization/jobs/${id}`)).body.toString());
  check(api.status === 'stopped', `API says ${api.status}`);
  await shot(t, page, '04-job-stopped');
});

test('API errors are shown: empty model, unknown model, unknown type', async (t) => {
  const page = await openPage(t, {allowStatuses: [400]});
  let requests = 0;
  page.on('request', (req) => {
    if (req.method() === 'POST') requests++;
  });
  await page.goto(serverA.base + '/');
  await page.waitForSelector('#job-form');

  await page.click('#submit');
  await page.waitForSelector('#form-error:not([hidden])');
  check((await page.textContent('#form-error')).includes('Enter a model'), 'no message for an empty model');
  check(await page.evaluate(() => document.activeElement.id) === 'model', 'focus not on the model field');
  check(requests === 0, 'an empty form was sent to the server');

  const missing = '/nonexistent/hwyquant-web-test-model';
  await page.fill('#model', missing);
  await page.click('#submit');
  await page.waitForFunction((m) => document.querySelector('#form-error').textContent.includes(m), missing);
  let text = await page.textContent('#form-error');
  t.log(`unknown model: ${text}`);
  check(/model not found/.test(text) && /HTTP 400/.test(text), `unknown model message: ${text}`);
  check(await page.locator('#cards .card').count() === 0, 'a card appeared for a rejected job');

  await page.fill('#model', MODEL);
  await page.selectOption('#qtype', 'custom');
  check(await page.evaluate(() => document.activeElement.id) === 'qtype-custom', 'free-text type field not focused');
  await page.fill('#qtype-custom', 'q9_z');
  await page.click('#submit');
  await page.waitForFunction(() => document.querySelector('#form-error').textContent.includes('q9_z'));
  text = await page.textContent('#form-error');
  t.log(`unknown type: ${text}`);
  check(/unknown quantization_type/.test(text) && /HTTP 400/.test(text), `unknown type message: ${text}`);
  check(await page.getAttribute('#form-error', 'role') === 'alert', 'form error is not announced');
  await shot(t, page, '05-error');

  // An importance matrix that does not exist: the job is accepted, runs, and fails saying why.
  await page.selectOption('#qtype', 'Q4_0');
  await page.fill('#imatrix', '/nonexistent/web-test-imatrix.dat');
  const {card, id} = await submitJob(page, MODEL);
  const s = await waitTerminal(card, 60000);
  check(s.status === 'failed', `job with a missing imatrix ended ${s.status}`);
  const note = await card.locator('.note').textContent();
  t.log(`missing imatrix: ${note}`);
  check(note.includes('/nonexistent/web-test-imatrix.dat'), `failed card does not say which file: ${note}`);
  const r = row(page, id);
  await r.locator('.badge', {hasText: 'failed'}).waitFor();
  check((await r.locator('.row-message').textContent()).includes('web-test-imatrix.dat'), 'failed row shows no reason');
  await shot(t, page, '05b-failed-job');
});

test('phone width and keyboard: focus order, Enter submits, no horizontal scrolling', async (t) => {
  const page = await openPage(t, {viewport: {width: 390, height: 844}, allowStatuses: [400]});
  await page.goto(serverA.base + '/');
  await page.waitForSelector('#jobs:not([hidden])');  // the stopped job from before
  const order = [];
  for (let i = 0; i < 7; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.className || document.activeElement.tagName));
  }
  t.log(`tab order: ${order.join(' > ')}`);
  const expected = ['skip', 'model', 'qtype', 'hf-token', 'imatrix', 'submit', 'refresh'];
  check(JSON.stringify(order) === JSON.stringify(expected), `tab order ${order.join(',')} != ${expected.join(',')}`);
  await page.focus('#model');
  await page.keyboard.type(MODEL);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#cards .card');
  const card = page.locator('#cards .card').first();
  const s = await waitTerminal(card, 120000);
  check(s.status === 'completed', `keyboard-submitted job ended ${s.status}`);
  const layout = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
    cellDisplay: getComputedStyle(document.querySelector('#jobs-body td')).display,
    label: getComputedStyle(document.querySelector('#jobs-body td'), '::before').content,
    minButton: Math.min(...[...document.querySelectorAll('button:not([hidden]), a.button')]
        .filter((b) => b.offsetParent).map((b) => b.getBoundingClientRect().height)),
  }));
  t.log(`phone layout: ${JSON.stringify(layout)}`);
  check(layout.scroll <= layout.width, `page scrolls sideways at 390 px: ${layout.scroll} > ${layout.width}`);
  check(layout.cellDisplay === 'grid' && /Model/.test(layout.label), `jobs table not stacked on a phone: ${JSON.stringify(layout)}`);
  check(layout.minButton >= 24, `a button is ${layout.minButton} px tall`);
  await shot(t, page, '06-phone');

  // A name the page accepts but the server refuses: the server's reason is shown.
  const id = await card.getAttribute('data-job-id');
  await row(page, id).getByRole('button', {name: /^Import/}).click();
  await page.fill('#import-name', 'bad name');
  await page.keyboard.press('Enter');
  check(await page.getAttribute('#import-name', 'aria-invalid') === 'true', 'invalid name not flagged');
  check(/letters, digits/.test(await page.textContent('#import-error')), 'no message for an invalid name');
  check(await page.evaluate(() => document.querySelector('#import-dialog').open), 'dialog closed on an invalid name');
  await page.fill('#import-name', '-x');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#alerts').textContent.includes('invalid model name'));
  const alert = await page.textContent('#alerts .alert-text');
  t.log(`import refused: ${alert}`);
  check(/^Importing the model: invalid model name '-x'.*\(HTTP 400/.test(alert), `import error message: ${alert}`);
  await page.click('#alerts button');
  check((await page.textContent('#alerts')).trim() === '', 'error not dismissed');
});

test('many jobs at once: at most 4 progress streams, page stays usable, queued jobs stop', async (t) => {
  const page = await openPage(t);
  let open = 0;
  let maxOpen = 0;
  const streams = new Set();
  page.on('request', (req) => {
    if (/\/progress$/.test(req.url())) {
      streams.add(req);
      open++;
      maxOpen = Math.max(maxOpen, open);
    }
  });
  const done = (req) => {
    if (streams.delete(req)) open--;
  };
  page.on('requestfinished', done);
  page.on('requestfailed', done);
  await page.goto(serverA.base + '/');
  await page.waitForSelector('#job-form');
  const ids = [];
  for (let i = 0; i < 7; i++) {
    const {id} = await submitJob(page, MODEL, 'F16');  // each needs a free connection for POST
    ids.push(id);
  }
  await page.click('#refresh');
  await page.waitForFunction((n) => document.querySelectorAll('#jobs-body tr').length >= n, ids.length);
  const statuses = await page.$$eval('#cards .card', (cs) => cs.map((c) => c.dataset.status));
  t.log(`7 jobs submitted; card statuses ${statuses.join(',')}; at most ${maxOpen} progress streams open`);
  check(maxOpen <= 4, `${maxOpen} progress streams open at once`);
  check(maxOpen >= 1, 'no progress stream opened');
  // Stop from the cards, newest (queued) first; each Stop needs a connection too.
  for (const id of [...ids].reverse()) {
    const card = page.locator(`#cards .card[data-job-id="${id}"]`);
    const st = await card.getAttribute('data-status');
    if (['completed', 'failed', 'stopped'].includes(st)) continue;
    await card.getByRole('button', {name: /^Stop/}).click();
    await page.waitForFunction((jid) => ['stopped', 'completed'].includes(
        document.querySelector(`#cards .card[data-job-id="${jid}"]`).dataset.status), id, {timeout: 20000});
  }
  const final = await Promise.all(ids.map(async (id) => (await httpGet(`${serverA.base}/api/quantization/jobs/${id}`)).body.toString()));
  const ended = final.map((b) => JSON.parse(b).status);
  t.log(`final statuses ${ended.join(',')}`);
  check(ended.every((x) => x === 'stopped' || x === 'completed'), `jobs not ended: ${ended}`);
  check(ended.filter((x) => x === 'stopped').length >= 5, `fewer than 5 of 7 jobs were stopped: ${ended}`);
  // Each card's log reads forward in time: nothing after the job was stopped.
  const logs = await page.$$eval('#cards .card[data-status=stopped] .log', (ls) => ls.map((l) => l.textContent.split('\n')));
  check(logs.length >= 5, `only ${logs.length} stopped cards`);
  for (const lines of logs) {
    const stopAt = lines.findIndex((l) => /^stopped/.test(l));
    check(stopAt >= 0 && stopAt === lines.length - 1, `card log continues after the stop: ${JSON.stringify(lines)}`);
  }
  await shot(t, page, '07-many-jobs');
});

test('server killed mid-job and restarted: the page reconnects and the job completes', async (t) => {
  let server = await startServer('restart', {env: {HWYQUANT_PROGRESS_DELAY_MS: PROGRESS_DELAY_MS}});
  t.cleanups.push(() => server.stop('SIGKILL'));
  const port = Number(new URL(server.base).port);
  const page = await openPage(t, {allowNetErrors: true});
  await page.goto(server.base + '/');
  await page.waitForFunction(() => document.querySelector('#no-jobs').textContent === 'No jobs yet.');
  const {card, id} = await submitJob(page, MODEL, 'Q6_K');
  const deadline = Date.now() + 60000;
  let s;
  for (;;) {
    s = await cardState(card);
    if (s.valueNow > 0 && s.status === 'quantizing') break;
    check(!['completed', 'failed', 'stopped'].includes(s.status), `job ended ${s.status} before the kill`);
    check(Date.now() < deadline, `job never started: ${JSON.stringify(s)}`);
    await sleep(40);
  }
  await server.stop('SIGKILL');
  await page.waitForFunction(() => /retrying/.test(document.querySelector('#cards .card .note').textContent),
      null, {timeout: 15000});
  t.log(`killed at ${s.valueNow}%; card note: ${await card.locator('.note').textContent()}`);
  await shot(t, page, '08-server-down');
  server = await startServer('restart', {env: {HWYQUANT_PROGRESS_DELAY_MS: PROGRESS_DELAY_MS}, port, dataDir: server.dataDir});
  s = await waitTerminal(card, 90000);
  check(s.status === 'completed', `resumed job ended ${s.status}`);
  check(await card.locator('.note').isHidden(), `retry note still shown: ${await card.locator('.note').textContent()}`);
  const job = JSON.parse((await httpGet(`${server.base}/api/quantization/jobs/${id}`)).body.toString());
  check(job.attempts === 2, `job ran ${job.attempts} times, expected a resume (2)`);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row(page, id).getByRole('link', {name: /^Download/}).click(),
  ]);
  const dlPath = path.join(tempDir('hwyquant-web-dl-'), 'resumed.gguf');
  await download.saveAs(dlPath);
  check(fs.readFileSync(dlPath).equals(referenceOutput('Q6_K')), 'resumed job output differs from hwyquant run Q6_K');
});

test('API key: asked once, sent as Bearer (also on the progress stream), downloads work', async (t) => {
  // The page itself is public; the API is not.
  const index = await httpGet(serverB.base + '/');
  check(index.status === 200 && /text\/html/.test(index.headers['content-type']), `GET / with a key set: ${index.status}`);
  check(/default-src 'self'/.test(index.headers['content-security-policy'] || ''), 'no Content-Security-Policy on the page');
  const js = await httpGet(serverB.base + '/app.js');
  check(js.status === 200 && /javascript/.test(js.headers['content-type']), `GET /app.js: ${js.status} ${js.headers['content-type']}`);
  check(js.body.equals(fs.readFileSync(path.join(__dirname, '../../web/app.js'))), 'served app.js differs from web/app.js (stale build?)');
  check((await httpGet(serverB.base + '/api/quantization/jobs')).status === 401, 'API answered without the key');
  // Only the page's own files are public: anything else still needs the key, then is 404.
  check((await httpGet(serverB.base + '/nope.html')).status === 401, 'unknown path answered without the key');
  check((await httpGet(serverB.base + '/nope.html', {Authorization: `Bearer ${API_KEY}`})).status === 404, 'unknown page file not 404');

  const page = await openPage(t, {allowStatuses: [401]});
  const progressAuth = [];
  page.on('response', (res) => {
    if (/\/progress$/.test(res.url())) progressAuth.push({status: res.status(), auth: res.request().headers().authorization});
  });
  let prompts = 0;
  await page.exposeFunction('__countPrompt', () => prompts++);
  await page.addInitScript(() => {
    const show = HTMLDialogElement.prototype.showModal;
    HTMLDialogElement.prototype.showModal = function() {
      if (this.id === 'key-dialog') window.__countPrompt();
      return show.call(this);
    };
  });
  await page.goto(serverB.base + '/');
  await page.waitForSelector('#key-dialog[open]');
  check(await page.evaluate(() => document.activeElement.id) === 'api-key', 'key field not focused');
  await shot(t, page, '09-api-key', false);
  await page.fill('#api-key', 'wrong-key');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#key-dialog').open &&
      document.querySelector('#key-reason').textContent.includes('rejected'));
  await page.fill('#api-key', API_KEY);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => !document.querySelector('#key-dialog').open);
  await page.waitForFunction(() => document.querySelector('#no-jobs').textContent === 'No jobs yet.');
  check(await page.evaluate(() => sessionStorage.getItem('hwyquant.apiKey')) === API_KEY, 'key not kept in sessionStorage');
  check(await page.evaluate(() => localStorage.getItem('hwyquant.apiKey')) === null, 'key stored in localStorage without "remember"');

  const {card, id} = await submitJob(page, MODEL, 'F16');
  const s = await waitTerminal(card, 60000);
  check(s.status === 'completed', `job with key ended ${s.status}`);
  check(progressAuth.length > 0, 'the page never opened the progress stream');
  check(progressAuth.every((p) => p.status === 200 && p.auth === `Bearer ${API_KEY}`), `progress stream requests: ${JSON.stringify(progressAuth)}`);

  const r = row(page, id);
  await r.locator('.badge', {hasText: 'completed'}).waitFor();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    r.getByRole('link', {name: /^Download/}).click(),
  ]);
  const dlPath = path.join(tempDir('hwyquant-web-dl-'), 'with-key.gguf');
  await download.saveAs(dlPath);
  check(fs.readFileSync(dlPath).equals(referenceOutput('F16')), 'download with key differs from hwyquant run F16');

  // The F16 GGUF as a model: a `hwyquant quantize` job, whose statistics feed the quality view too.
  const g = await submitJob(page, dlPath, 'Q8_0');
  const gs = await waitTerminal(g.card, 60000);
  check(gs.status === 'completed', `GGUF job ended ${gs.status}: ${gs.log}`);
  await row(page, g.id).locator('.badge', {hasText: 'completed'}).waitFor();
  await row(page, g.id).getByRole('button', {name: /^Quality/}).click();
  await page.waitForFunction(() => document.querySelectorAll('#quality-body tr').length > 0 ||
      document.querySelector('#quality-summary').classList.contains('error'), null, {timeout: 15000});
  check(!(await page.locator('#quality-summary.error').count()), `quality of the GGUF job: ${await page.textContent('#quality-summary')}`);
  const ggufRows = await page.$$eval('#quality-body tr', (trs) => trs.map((tr) => [tr.cells[2].textContent, Number(tr.cells[6].textContent)]));
  const tensorCount = ggufTensorCount(fs.readFileSync(dlPath));
  check(ggufRows.length === tensorCount, `GGUF job quality rows ${ggufRows.length} != ${tensorCount} tensors`);
  check(ggufRows.some(([type]) => type === 'Q8_0') && ggufRows.filter(([type]) => type === 'Q8_0').every(([, rmse]) => rmse > 0),
      `Q8_0 rows without RMSE: ${JSON.stringify(ggufRows)}`);
  t.log(`GGUF job: ${ggufRows.length} quality rows`);

  await page.reload();
  await page.waitForSelector(`#jobs-body tr[data-job-id="${id}"]`);
  check(prompts === 2, `key dialog shown ${prompts} times (expected 2: missing, then wrong key)`);
  const alerts = await page.textContent('#alerts');
  check(alerts.trim() === '', `error messages shown: ${alerts}`);
});

// ---------------------------------------------------------------------------------------------
// Runner: sequential, each test bounded, cleanups always run; "N passed, N failed" at the end.

async function runTest(tc) {
  const t = {cleanups: [], log: (m) => console.log(`    ${m}`)};
  let error = null;
  let timer;
  try {
    await Promise.race([
      tc.fn(t),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Failure(`timed out after ${TEST_TIMEOUT_MS} ms`)), TEST_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    error = e;
  } finally {
    clearTimeout(timer);
  }
  for (const c of t.cleanups.reverse()) {
    try {
      await c();
    } catch (e) {
      error = error || e;
    }
  }
  return error;
}

async function main() {
  const watchdog = setTimeout(() => {
    console.error(`browser test: watchdog fired after ${WATCHDOG_MS} ms`);
    killAll();
    process.exit(1);
  }, WATCHDOG_MS);
  let passed = 0;
  let failed = 0;
  try {
    check(fs.existsSync(HWYQUANT), `hwyquant binary not found: ${HWYQUANT}`);
    if (!fs.existsSync(path.join(MODEL, 'config.json'))) {
      if (process.env.HWYQUANT_REQUIRE_SHARED === '1') throw new Failure(`model not found: ${MODEL}`);
      console.log(`browser test: ${MODEL} missing, skipping`);
      process.exitCode = 77;
      return;
    }
    fs.rmSync(SHOTS, {recursive: true, force: true});
    fs.mkdirSync(OUT, {recursive: true});
    browser = await chromium.launch({executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60000});
    console.log(`browser test: ${CHROMIUM} ${browser.version()}, hwyquant ${HWYQUANT}`);
    serverA = await startServer('plain', {env: {HWYQUANT_PROGRESS_DELAY_MS: PROGRESS_DELAY_MS}});
    serverB = await startServer('key', {apiKey: API_KEY});
    for (const tc of tests) {
      if (args.only && !tc.name.includes(args.only)) continue;
      const started = Date.now();
      console.log(`--- ${tc.name}`);
      const error = await runTest(tc);
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      if (error) {
        failed++;
        console.log(`not ok - ${tc.name} (${secs} s)\n    ${error instanceof Failure ? error.message : error.stack}`);
      } else {
        passed++;
        console.log(`ok - ${tc.name} (${secs} s)`);
      }
    }
  } catch (e) {
    failed++;
    console.log(`not ok - setup\n    ${e instanceof Failure ? e.message : e.stack}`);
  } finally {
    if (browser) await browser.close().catch(() => {});
    for (const s of [serverA, serverB]) if (s) await s.stop().catch(() => {});
    killAll();
    for (const d of tempDirs) fs.rmSync(d, {recursive: true, force: true});
    clearTimeout(watchdog);
  }
  if (process.exitCode !== 77) {
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  }
}

main();
