// The hwyquant serve web page's logic: talks to LocalAI's quantization job API and nothing else.
'use strict';

(() => {
  const API = '/api/quantization';
  const KEY_STORE = 'hwyquant.apiKey';
  const ACTIVE = new Set(['queued', 'downloading', 'converting', 'quantizing']);
  const TERMINAL = new Set(['completed', 'failed', 'stopped']);
  const LOG_LINES = 6;
  const STREAM_MAX_FAILURES = 8;
  // A browser opens at most 6 HTTP/1.1 connections to one server and each progress stream holds
  // one: beyond this many, jobs are updated by the periodic list refresh instead.
  const MAX_STREAMS = 4;

  const $ = (id) => document.getElementById(id);
  const state = {
    jobs: new Map(),      // id -> latest job JSON (list and SSE merged)
    cards: new Map(),     // id -> {root, refs}
    streams: new Map(),   // id -> AbortController
    logs: new Map(),      // id -> last log lines
    keyPrompt: null,      // pending API key dialog, shared by every request that got a 401
    quality: null,        // {jobId, rows, sortKey, sortDir}
    importJobId: null,
    refreshing: null,
    keyDeclined: false,   // the user cancelled the key prompt: do not nag again until Refresh
    deleteArmed: new Map(),  // id -> time the first Delete press expires
  };

  // ------------------------------------------------------------------------------------------
  // Formatting.

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function num(v) {
    const n = typeof v === 'string' ? Number(v) : v;
    return typeof n === 'number' && Number.isFinite(n) ? n : null;
  }

  function fmtBytes(bytes) {
    if (bytes === null) return '—';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let v = bytes;
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return (i === 0 ? String(Math.round(v)) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' +
        units[i];
  }

  function fmtCount(n) {
    if (n === null) return '—';
    if (n >= 1e9) return (n / 1e9).toFixed(2) + ' G';
    if (n >= 1e6) return (n / 1e6).toFixed(2) + ' M';
    if (n >= 1e3) return (n / 1e3).toFixed(1) + ' k';
    return String(Math.round(n));
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds < 0) return '—';
    if (seconds < 1) return '<1 s';
    const s = Math.round(seconds);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function fmtSci(v) {
    if (v === null) return '—';
    if (v === 0) return '0';
    const a = Math.abs(v);
    return a >= 0.01 && a < 1000 ? v.toPrecision(4) : v.toExponential(3);
  }

  function fmtDate(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return iso || '—';
    return d.toLocaleString(undefined, {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
      second: '2-digit',
    });
  }

  function baseName(path) {
    return String(path || '').split('/').filter(Boolean).pop() || '';
  }

  function typeLabel(job) {
    return String(job.quantization_type || '').toUpperCase();
  }

  // ------------------------------------------------------------------------------------------
  // Messages.

  function showError(message) {
    const box = $('alerts');
    for (const item of box.children) {
      if (item.dataset.text === message) return;  // the same failure once, not once per poll
    }
    const item = el('div', {class: 'alert'}, el('span', {class: 'alert-text', text: message}));
    item.dataset.text = message;
    item.append(el('button', {
      type: 'button', class: 'link', 'aria-label': 'Dismiss error', text: 'Dismiss',
      onclick: () => item.remove(),
    }));
    box.append(item);
  }

  function clearErrors(prefix) {
    for (const item of [...$('alerts').children]) {
      if (!prefix || item.dataset.text.startsWith(prefix)) item.remove();
    }
  }

  let noticeTimer = null;
  function showNotice(message) {
    const box = $('notices');
    box.textContent = message;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      box.textContent = '';
      box.hidden = true;
    }, 8000);
  }

  // ------------------------------------------------------------------------------------------
  // API access, with the Bearer key asked for once when the server answers 401.

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function storedKey() {
    return sessionStorage.getItem(KEY_STORE) || localStorage.getItem(KEY_STORE) || '';
  }

  function askForKey(reason) {
    if (state.keyPrompt) return state.keyPrompt;
    const dialog = $('key-dialog');
    $('key-reason').textContent = reason;
    $('api-key').value = '';
    state.keyPrompt = new Promise((resolve, reject) => {
      const done = (ok) => {
        $('key-form').removeEventListener('submit', onSubmit);
        $('key-cancel').removeEventListener('click', onCancel);
        dialog.removeEventListener('cancel', onCancel);
        if (dialog.open) dialog.close();
        state.keyPrompt = null;
        state.keyDeclined = !ok;
        if (ok) resolve();
        else reject(new ApiError(401, 'This server needs an API key; press Refresh to enter it.'));
      };
      const onSubmit = (e) => {
        e.preventDefault();
        const key = $('api-key').value.trim();
        if (!key) {
          $('api-key').focus();
          return;
        }
        sessionStorage.setItem(KEY_STORE, key);
        if ($('api-key-remember').checked) localStorage.setItem(KEY_STORE, key);
        else localStorage.removeItem(KEY_STORE);
        done(true);
      };
      const onCancel = (e) => {
        e.preventDefault();
        done(false);
      };
      $('key-form').addEventListener('submit', onSubmit);
      $('key-cancel').addEventListener('click', onCancel);
      dialog.addEventListener('cancel', onCancel);
      dialog.showModal();
      $('api-key').focus();
    });
    return state.keyPrompt;
  }

  async function errorText(res, what) {
    let detail = '';
    try {
      const text = (await res.text()).trim();
      try {
        const j = JSON.parse(text);
        if (typeof j === 'string') detail = j;
        else if (j && typeof j.error === 'string') detail = j.error;
        else if (j && j.error && typeof j.error.message === 'string') detail = j.error.message;
        else if (j && typeof j.message === 'string') detail = j.message;
      } catch (_) {
        detail = text.slice(0, 300);
      }
    } catch (_) { /* body unreadable: the status line says enough */ }
    const status = `HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`;
    return detail ? `${what}: ${detail} (${status})` : `${what}: ${status}`;
  }

  // method/path relative to /api/quantization; `what` names the action in error messages.
  async function api(method, path, {body, what, raw, signal, accept} = {}) {
    const label = what || `${method} ${API}${path}`;
    for (let attempt = 0; ; attempt++) {
      const headers = {Accept: accept || 'application/json'};
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const key = storedKey();
      if (key) headers.Authorization = 'Bearer ' + key;
      let res;
      try {
        res = await fetch(API + path, {
          method, headers, signal, cache: 'no-store',
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        throw new ApiError(0, `${label}: cannot reach the server (${e.message})`);
      }
      if (res.status === 401 && attempt < 3 && !state.keyDeclined) {
        await res.body?.cancel().catch(() => {});
        if (key) {
          sessionStorage.removeItem(KEY_STORE);
          localStorage.removeItem(KEY_STORE);
        }
        await askForKey(key ? 'The server rejected the API key. Enter the right one.'
                            : 'This server needs an API key.');
        continue;
      }
      if (!res.ok) throw new ApiError(res.status, await errorText(res, label));
      if (raw) return res;
      const text = await res.text();
      if (!text) return null;
      try {
        return JSON.parse(text);
      } catch (_) {
        throw new ApiError(res.status, `${label}: the server sent a response that is not JSON`);
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Progress: SSE read with fetch() so the Bearer header goes along.

  function parseSseBlock(block) {
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
    }
    if (!data.length) return null;
    try {
      return JSON.parse(data.join('\n'));
    } catch (_) {
      return null;
    }
  }

  function follow(jobId) {
    if (state.streams.has(jobId) || state.streams.size >= MAX_STREAMS) return;
    const ctl = new AbortController();
    state.streams.set(jobId, ctl);
    (async () => {
      let failures = 0;
      let finished = false;
      while (!finished && !ctl.signal.aborted) {
        try {
          const res = await api('GET', `/jobs/${encodeURIComponent(jobId)}/progress`, {
            raw: true, signal: ctl.signal, accept: 'text/event-stream',
            what: 'Progress stream',
          });
          const reader = res.body.getReader();
          const decoder = new TextDecoder();
          let buf = '';
          for (;;) {
            const {value, done} = await reader.read();
            if (done) break;
            // Line ends may be CRLF or CR; a CR ending the chunk waits for a possible LF.
            buf = (buf + decoder.decode(value, {stream: true})).replace(/\r\n|\r(?!$)/g, '\n');
            let cut;
            while ((cut = buf.indexOf('\n\n')) >= 0) {
              const event = parseSseBlock(buf.slice(0, cut));
              buf = buf.slice(cut + 2);
              if (!event) continue;
              if (failures) setCardNote(jobId, '');  // reconnected: the retry note is stale
              failures = 0;
              onProgress(jobId, event);
              if (TERMINAL.has(event.status)) finished = true;
            }
            if (finished) {
              reader.cancel().catch(() => {});
              break;
            }
          }
        } catch (e) {
          if (ctl.signal.aborted || e.name === 'AbortError') break;
          if (e.status === 404 || e.status === 401) {
            finished = true;
            if (e.status === 401) showError(e.message);
            break;
          }
          const why = e instanceof ApiError ? e.message : `Progress stream: connection lost (${e.message})`;
          setCardNote(jobId, `${why}; retrying…`);
        }
        if (!finished && !ctl.signal.aborted) {
          // Failed, or closed early (server restart, proxy timeout): back off, then resume.
          failures++;
          if (failures >= STREAM_MAX_FAILURES) {
            setCardNote(jobId, 'Lost the progress stream; the list below still refreshes. Press Refresh to retry.');
            break;
          }
          await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** failures, 8000)));
        }
      }
      if (state.streams.get(jobId) === ctl) state.streams.delete(jobId);
      if (finished) refreshJobs();
    })();
  }

  function stopFollowing(jobId) {
    const ctl = state.streams.get(jobId);
    if (ctl) ctl.abort();
    state.streams.delete(jobId);
  }

  function onProgress(jobId, event) {
    const prev = state.jobs.get(jobId) || {id: jobId};
    // A finished job never runs again: an active state arriving later is from an older response.
    if (TERMINAL.has(prev.status) && event.status && !TERMINAL.has(event.status)) return;
    const job = Object.assign({}, prev, {
      status: event.status ?? prev.status,
      progress_percent: event.progress_percent ?? prev.progress_percent,
      message: event.message ?? prev.message,
      output_file: event.output_file ?? prev.output_file,
      extra_metrics: event.extra_metrics ?? prev.extra_metrics,
    });
    state.jobs.set(jobId, job);
    if (job.message) {
      const log = state.logs.get(jobId) || [];
      if (log[log.length - 1] !== job.message) log.push(job.message);
      while (log.length > LOG_LINES) log.shift();
      state.logs.set(jobId, log);
    }
    renderCard(job);
    updateRow(job);
  }

  // ------------------------------------------------------------------------------------------
  // Progress cards.

  // "[ 12/ 57] quantizing blk.3.ffn_up.weight ..." -> {index, count, verb, tensor}
  function parseTensorMessage(message) {
    const m = /^\[\s*(\d+)\s*\/\s*(\d+)\]\s+(\S+)\s+(\S+)/.exec(message || '');
    return m ? {index: +m[1], count: +m[2], verb: m[3], tensor: m[4]} : null;
  }

  // The rate of the stage the job is in: the server keeps the last rate of every stage.
  function throughputText(status, metrics) {
    const w = num(metrics.throughput_weights_per_s);
    const mb = num(metrics.throughput_mb_per_s);
    const t = num(metrics.throughput_tensors_per_s);
    const weights = w !== null ? fmtCount(w) + ' weights/s' : null;
    const bytes = mb !== null ? mb.toFixed(mb < 10 ? 2 : 1) + ' MB/s' : null;
    const tensors = t !== null ? t.toFixed(1) + ' tensors/s' : null;
    const order = status === 'downloading' || status === 'converting'
        ? [bytes, tensors, weights] : [weights, bytes, tensors];
    return order.find((x) => x) || '—';
  }

  function etaSeconds(job) {
    const pct = num(job.progress_percent);
    const elapsed = num((job.extra_metrics || {}).elapsed_seconds);
    if (TERMINAL.has(job.status)) return 0;
    if (pct === null || elapsed === null || pct <= 0.5) return null;
    return elapsed * (100 - pct) / pct;
  }

  function ensureCard(job) {
    let card = state.cards.get(job.id);
    if (card) return card;
    const refs = {};
    const title = `${baseName(job.model) || job.model || job.id} → ${typeLabel(job)}`;
    refs.title = el('h3', {class: 'card-title', text: title});
    refs.status = el('span', {class: 'badge'});
    refs.fill = el('div', {class: 'bar-fill'});
    refs.bar = el('div', {
      class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
      'aria-label': `Progress of ${title}`,
    }, refs.fill);
    refs.percent = el('span', {class: 'percent'});
    refs.stage = el('dd', {class: 'stage'});
    refs.tensor = el('dd', {class: 'tensor'});
    refs.throughput = el('dd', {class: 'throughput'});
    refs.eta = el('dd', {class: 'eta'});
    refs.log = el('pre', {class: 'log', 'aria-label': 'Last log lines'});
    refs.note = el('p', {class: 'note', hidden: true});
    refs.stop = el('button', {
      type: 'button', class: 'danger', text: 'Stop',
      'aria-label': `Stop ${title}`, onclick: () => stopJob(job.id),
    });
    refs.dismiss = el('button', {
      type: 'button', text: 'Dismiss', hidden: true, 'aria-label': `Dismiss card of ${title}`,
      onclick: () => removeCard(job.id),
    });
    const root = el('article', {class: 'card', 'data-job-id': job.id, 'aria-label': title},
      el('div', {class: 'card-head'}, refs.title, refs.status),
      el('div', {class: 'bar-row'}, refs.bar, refs.percent),
      el('dl', {class: 'facts'},
        el('dt', {text: 'Stage'}), refs.stage,
        el('dt', {text: 'Tensor'}), refs.tensor,
        el('dt', {text: 'Throughput'}), refs.throughput,
        el('dt', {text: 'ETA'}), refs.eta),
      refs.log, refs.note,
      el('div', {class: 'actions'}, refs.stop, refs.dismiss));
    $('cards').prepend(root);
    card = {root, refs};
    state.cards.set(job.id, card);
    $('no-running').hidden = true;
    return card;
  }

  function renderCard(job) {
    const card = ensureCard(job);
    const r = card.refs;
    const metrics = job.extra_metrics || {};
    const pct = Math.max(0, Math.min(100, num(job.progress_percent) ?? 0));
    r.fill.style.width = pct + '%';
    r.bar.setAttribute('aria-valuenow', pct.toFixed(0));
    r.bar.setAttribute('aria-valuetext', `${pct.toFixed(1)} percent, ${job.status}`);
    r.percent.textContent = pct.toFixed(pct >= 100 || pct === 0 ? 0 : 1) + '%';
    r.status.textContent = job.status || 'unknown';
    r.status.className = 'badge status-' + (job.status || 'unknown');
    card.root.dataset.status = job.status || '';
    r.stage.textContent = job.status || '—';
    const t = parseTensorMessage(job.message);
    const done = num(metrics.tensors_done);
    const total = num(metrics.tensors_total);
    if (t) {
      r.tensor.textContent = `${t.tensor} (${t.index}/${t.count})`;
      r.stage.textContent = t.verb === job.status ? job.status : `${job.status} — ${t.verb}`;
    } else if (done !== null && total !== null) {
      r.tensor.textContent = `${done}/${total}`;
    } else if (!TERMINAL.has(job.status)) {
      r.tensor.textContent = '—';
    }
    r.throughput.textContent = throughputText(job.status, metrics);
    const eta = etaSeconds(job);
    const elapsed = num(metrics.elapsed_seconds);
    r.eta.textContent = job.status === 'completed'
        ? (elapsed !== null ? `done in ${fmtDuration(elapsed)}` : '—')
        : TERMINAL.has(job.status) ? '—' : fmtDuration(eta);
    r.log.textContent = (state.logs.get(job.id) || []).join('\n');
    r.log.scrollTop = r.log.scrollHeight;  // newest line in view
    const terminal = TERMINAL.has(job.status);
    r.stop.hidden = terminal;
    r.dismiss.hidden = !terminal;
    if (terminal) {
      r.note.hidden = job.status !== 'failed';
      if (job.status === 'failed') r.note.textContent = job.message || 'failed';
      r.note.classList.toggle('error', job.status === 'failed');
    }
  }

  function setCardNote(jobId, text) {
    const card = state.cards.get(jobId);
    if (!card) return;
    card.refs.note.textContent = text;
    card.refs.note.hidden = !text;
  }

  function removeCard(jobId) {
    const card = state.cards.get(jobId);
    if (!card) return;
    const hadFocus = card.root.contains(document.activeElement);
    card.root.remove();
    state.cards.delete(jobId);
    $('no-running').hidden = state.cards.size > 0;
    if (hadFocus) $('refresh').focus();
  }

  // ------------------------------------------------------------------------------------------
  // Jobs table.

  function sizeBytes(job) {
    const mb = num((job.extra_metrics || {}).file_size_mb);
    return mb === null ? null : mb * 1e6;
  }

  function bitsPerWeight(job) {
    const m = job.extra_metrics || {};
    const bpw = num(m.bits_per_weight);
    if (bpw !== null) return bpw;
    const bytes = sizeBytes(job);
    const n = num(m.n_weights);
    return job.status === 'completed' && bytes !== null && n ? (bytes * 8) / n : null;
  }

  function actionButton(text, label, handler, cls) {
    return el('button', {type: 'button', class: cls, text, 'aria-label': label, onclick: handler});
  }

  function buildRow(job) {
    const name = `${baseName(job.model) || job.model} ${typeLabel(job)}`;
    const actions = el('div', {class: 'row-actions'});
    if (ACTIVE.has(job.status)) {
      actions.append(actionButton('Stop', `Stop ${name}`, () => stopJob(job.id), 'danger'));
    }
    if (job.status === 'completed') {
      const file = baseName(job.output_file) || `${job.id}.gguf`;
      actions.append(el('a', {
        class: 'button', href: `${API}/jobs/${encodeURIComponent(job.id)}/download`,
        download: file, 'aria-label': `Download ${file}`, text: 'Download',
        onclick: (e) => downloadJob(e, job.id, file),
      }));
      if (job.import_status === 'completed' && job.import_model_name) {
        actions.append(el('span', {class: 'muted', text: `imported as ${job.import_model_name}`}));
      } else if (job.import_status === 'importing') {
        actions.append(el('span', {class: 'muted', text: 'importing…'}));
      } else {
        if (job.import_status === 'failed' && job.import_message) {
          actions.append(el('span', {class: 'error', text: `import failed: ${job.import_message}`}));
        }
        actions.append(actionButton('Import', `Import ${name}`, () => openImport(job.id)));
      }
      // Jobs created with extra_options.stats "false" have no per-tensor statistics to show.
      const stats = String((job.extra_options || {}).stats ?? 'true').toLowerCase();
      if (!['false', '0', 'no'].includes(stats)) {
        actions.append(actionButton('Quality', `Quality of ${name}`, () => openQuality(job.id)));
      }
    }
    if (TERMINAL.has(job.status)) {
      // Two presses: deleting removes the output file for good. The armed state lives outside
      // the row so a periodic refresh does not disarm it.
      const armed = (state.deleteArmed.get(job.id) || 0) > Date.now();
      const del = actionButton(armed ? 'Confirm delete' : 'Delete',
                               armed ? `Confirm: delete ${name} and its files` : `Delete ${name}`,
                               () => {
        if ((state.deleteArmed.get(job.id) || 0) > Date.now()) {
          state.deleteArmed.delete(job.id);
          deleteJob(job.id);
          return;
        }
        state.deleteArmed.set(job.id, Date.now() + 5000);
        updateRow(job);
        setTimeout(() => {
          if (state.deleteArmed.has(job.id) && state.deleteArmed.get(job.id) <= Date.now()) {
            state.deleteArmed.delete(job.id);
            const current = state.jobs.get(job.id);
            if (current) updateRow(current);
          }
        }, 5100);
      }, 'danger');
      actions.append(del);
    }
    const status = el('span', {class: 'badge status-' + job.status, text: job.status});
    const statusCell = el('td', {'data-label': 'Status'}, status);
    if (job.status === 'failed' && job.message) {
      statusCell.append(el('div', {class: 'row-message error', text: job.message}));
    } else if (job.status === 'stopped' && job.message) {
      statusCell.append(el('div', {class: 'row-message muted', text: job.message}));
    } else if (ACTIVE.has(job.status)) {
      statusCell.append(el('span', {class: 'muted', text: ` ${(num(job.progress_percent) ?? 0).toFixed(0)}%`}));
    }
    const bpw = bitsPerWeight(job);
    return el('tr', {'data-job-id': job.id, 'data-status': job.status},
      el('td', {'data-label': 'Model', class: 'model', title: job.model, text: job.model}),
      el('td', {'data-label': 'Type', text: typeLabel(job)}),
      statusCell,
      el('td', {'data-label': 'Created'},
        el('time', {datetime: job.created_at, text: fmtDate(job.created_at)})),
      el('td', {'data-label': 'Size', class: 'num', text: fmtBytes(sizeBytes(job))}),
      el('td', {'data-label': 'Bits/weight', class: 'num', text: bpw === null ? '—' : bpw.toFixed(2)}),
      el('td', {'data-label': 'Actions'}, actions));
  }

  function updateRow(job) {
    const old = document.querySelector(`#jobs-body tr[data-job-id="${CSS.escape(job.id)}"]`);
    if (!old) return;
    // Keep keyboard focus on the same action when a row is rebuilt under it.
    const focused = old.contains(document.activeElement) ? actionKind(document.activeElement) : null;
    const row = buildRow(job);
    old.replaceWith(row);
    if (focused) {
      const again = [...row.querySelectorAll('button, a')].find((b) => actionKind(b) === focused);
      if (again) again.focus();
    }
  }

  // Which action a control is, stable across "Delete"/"Confirm delete".
  function actionKind(node) {
    return (node.textContent || '').replace(/^Confirm delete$/, 'Delete');
  }

  function renderTable() {
    const jobs = [...state.jobs.values()].sort((a, b) =>
      String(b.created_at || '').localeCompare(String(a.created_at || '')) ||
      (b._order ?? 0) - (a._order ?? 0));
    const body = $('jobs-body');
    const focusedRow = document.activeElement?.closest?.('#jobs-body tr');
    const focusedId = focusedRow?.dataset.jobId;
    const focusedText = focusedId ? actionKind(document.activeElement) : null;
    body.replaceChildren(...jobs.map(buildRow));
    $('jobs').hidden = jobs.length === 0;
    $('no-jobs').hidden = jobs.length > 0;
    $('no-jobs').textContent = 'No jobs yet.';
    if (focusedId) {
      const row = body.querySelector(`tr[data-job-id="${CSS.escape(focusedId)}"]`);
      const again = row && [...row.querySelectorAll('button, a')].find((b) => actionKind(b) === focusedText);
      if (again) again.focus();
      else if (!row) $('refresh').focus();
    }
  }

  async function refreshJobs() {
    if (state.refreshing) return state.refreshing;
    state.refreshing = (async () => {
      try {
        const data = await api('GET', '/jobs', {what: 'Loading the job list'});
        const list = Array.isArray(data) ? data : (data && Array.isArray(data.jobs) ? data.jobs : []);
        const seen = new Set();
        list.forEach((job, i) => {
          if (!job || typeof job.id !== 'string') return;
          seen.add(job.id);
          job._order = i;
          const prev = state.jobs.get(job.id);
          if (prev && TERMINAL.has(prev.status) && !TERMINAL.has(job.status)) {
            // This list left the server before the stream or Stop told us the job ended.
            Object.assign(job, {status: prev.status, message: prev.message,
                                progress_percent: prev.progress_percent});
          }
          state.jobs.set(job.id, job);
          if (ACTIVE.has(job.status) || state.cards.has(job.id)) renderCard(job);
        });
        // Running jobs get a stream first, taking one from a queued job if all are in use.
        const active = list.filter((j) => j && ACTIVE.has(j.status));
        for (const job of active.filter((j) => j.status !== 'queued')) {
          if (!state.streams.has(job.id) && state.streams.size >= MAX_STREAMS) {
            const queued = [...state.streams.keys()].find((id) => state.jobs.get(id)?.status === 'queued');
            if (queued) stopFollowing(queued);
          }
          follow(job.id);
        }
        for (const job of active.filter((j) => j.status === 'queued')) follow(job.id);
        for (const id of [...state.jobs.keys()]) {
          if (!seen.has(id)) {
            state.jobs.delete(id);
            stopFollowing(id);
            removeCard(id);
          }
        }
        renderTable();
        clearErrors('Loading the job list');
      } catch (e) {
        showError(e.message);
      } finally {
        state.refreshing = null;
      }
    })();
    return state.refreshing;
  }

  // ------------------------------------------------------------------------------------------
  // Actions.

  function selectedType() {
    const sel = $('qtype').value;
    return sel === 'custom' ? $('qtype-custom').value.trim() : sel;
  }

  function formError(message, focusId) {
    const box = $('form-error');
    box.textContent = message;
    box.hidden = !message;
    if (focusId) $(focusId).focus();
  }

  async function submitJob(e) {
    e.preventDefault();
    formError('');
    const model = $('model').value.trim();
    if (!model) {
      $('model').setAttribute('aria-invalid', 'true');
      formError('Enter a model: a folder or GGUF file on the server, or a Hub id like org/name.', 'model');
      return;
    }
    $('model').removeAttribute('aria-invalid');
    const type = selectedType();
    if (!type) {
      formError('Type a quantization type, or pick one from the list.', 'qtype-custom');
      return;
    }
    const extra = {};
    const token = $('hf-token').value.trim();
    const imatrix = $('imatrix').value.trim();
    if (token) extra.hf_token = token;
    if (imatrix) extra.imatrix = imatrix;
    const button = $('submit');
    button.disabled = true;
    $('form-status').textContent = 'Submitting…';
    try {
      const body = {model, backend: 'hwyquant', quantization_type: type.toLowerCase()};
      if (Object.keys(extra).length) body.extra_options = extra;
      const created = await api('POST', '/jobs', {body, what: 'Could not start the job'});
      $('hf-token').value = '';
      $('form-status').textContent = '';
      if (created && typeof created.id === 'string') {
        // The create answer is short ({id, status, message}); the job itself has every field.
        let job;
        try {
          job = await api('GET', `/jobs/${encodeURIComponent(created.id)}`, {what: 'Loading the new job'});
        } catch (_) {
          job = null;
        }
        job = Object.assign({model, quantization_type: type, created_at: new Date().toISOString()},
                            created, job || {});
        job.message = job.message || created.message;
        job._order = Number.MAX_SAFE_INTEGER;
        state.jobs.set(job.id, job);
        showNotice(`Queued ${job.model} as ${typeLabel(job)} (job ${job.id.slice(0, 8)}).`);
        renderCard(job);
        follow(job.id);
        renderTable();
      }
      refreshJobs();
    } catch (err) {
      $('form-status').textContent = '';
      formError(err.message, 'model');
    } finally {
      button.disabled = false;
    }
  }

  async function stopJob(id) {
    try {
      const res = await api('POST', `/jobs/${encodeURIComponent(id)}/stop`, {what: 'Stopping the job'});
      // The answer is short ({status, message}); the job itself says how it ended.
      const job = await api('GET', `/jobs/${encodeURIComponent(id)}`, {what: 'Loading the stopped job'})
          .catch(() => null);
      if (job && job.id) onProgress(id, job);
      else if (res && res.status) onProgress(id, {status: res.status});
      showNotice('Job stopped.');
    } catch (e) {
      showError(e.message);
    }
    refreshJobs();
  }

  async function deleteJob(id) {
    try {
      await api('DELETE', `/jobs/${encodeURIComponent(id)}`, {what: 'Deleting the job'});
      stopFollowing(id);
      removeCard(id);
      if (state.quality && state.quality.jobId === id) closeQuality();
      state.jobs.delete(id);
      showNotice('Job deleted.');
    } catch (e) {
      showError(e.message);
    }
    refreshJobs();
  }

  async function downloadJob(e, id, file) {
    // Without a key the browser follows the link itself (streams to disk, any size).
    if (!storedKey()) return;
    e.preventDefault();
    try {
      const res = await api('GET', `/jobs/${encodeURIComponent(id)}/download`, {
        raw: true, accept: 'application/octet-stream', what: 'Downloading the model',
      });
      const url = URL.createObjectURL(await res.blob());
      const a = el('a', {href: url, download: file, hidden: true});
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      showError(err.message);
    }
  }

  function openImport(id) {
    state.importJobId = id;
    $('import-name').value = '';
    $('import-name').removeAttribute('aria-invalid');
    $('import-error').hidden = true;
    $('import-dialog').showModal();
    $('import-name').focus();
  }

  async function submitImport(e) {
    e.preventDefault();
    const input = $('import-name');
    const name = input.value.trim();
    if (name && !input.checkValidity()) {
      input.setAttribute('aria-invalid', 'true');
      $('import-error').textContent = 'Use only letters, digits, ".", "_" and "-" (at most 128).';
      $('import-error').hidden = false;
      input.focus();
      return;
    }
    input.removeAttribute('aria-invalid');
    $('import-error').hidden = true;
    $('import-dialog').close();
    const id = state.importJobId;
    try {
      const res = await api('POST', `/jobs/${encodeURIComponent(id)}/import`, {
        body: name ? {name} : {}, what: 'Importing the model',
      });
      const imported = (res && (res.model_name || res.name || res.import_model_name)) || name;
      refreshJobs();
      // The server accepts the import and copies in the background; its job says how it ended.
      const job = await waitForImport(id);
      if (job && job.import_status === 'failed') {
        showError(job.import_message || 'Import failed.');
      } else {
        showNotice(imported ? `Imported as ${imported}.` : 'Imported.');
      }
    } catch (err) {
      showError(err.message);
    }
    refreshJobs();
  }

  // Polls a job until its import is no longer running (or a minute passes); returns the job.
  async function waitForImport(id) {
    const deadline = Date.now() + 60000;
    let job = null;
    while (Date.now() < deadline) {
      job = await api('GET', `/jobs/${encodeURIComponent(id)}`, {what: 'Checking the import'});
      if (!job || job.import_status !== 'importing') return job;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    return job;
  }

  // ------------------------------------------------------------------------------------------
  // Quality view: per-tensor types and errors of a finished job.

  const STAT_COLUMNS = [
    {key: 'index', label: '#', num: true, fmt: (v) => String(v + 1)},
    {key: 'name', label: 'Tensor'},
    {key: 'type', label: 'Type'},
    {key: 'n', label: 'Weights', num: true, fmt: fmtCount},
    {key: 'bytes', label: 'Size', num: true, fmt: fmtBytes},
    {key: 'bpw', label: 'Bits/weight', num: true, fmt: (v) => (v === null ? '—' : v.toFixed(2))},
    {key: 'rmse', label: 'RMSE', num: true, fmt: fmtSci},
    {key: 'maxAbs', label: 'Max abs error', num: true, fmt: fmtSci},
    {key: 'relErr', label: 'Rel. output error', num: true, fmt: fmtSci},
  ];

  const TYPE_COLORS = {
    F32: '#6b7280', F16: '#9ca3af', BF16: '#a8a29e', Q8_0: '#15803d', Q6_K: '#65a30d',
    Q5_K: '#0d9488', Q5_0: '#0891b2', Q5_1: '#0284c7', Q4_K: '#2563eb', Q4_0: '#4f46e5',
    Q4_1: '#7c3aed', Q3_K: '#c026d3', Q2_K: '#dc2626', IQ4_NL: '#ea580c',
  };
  function typeColor(type) {
    if (TYPE_COLORS[type]) return TYPE_COLORS[type];
    let h = 0;
    for (const c of type) h = (h * 31 + c.charCodeAt(0)) % 360;
    return `hsl(${h} 60% 45%)`;
  }

  function pick(obj, ...keys) {
    for (const k of keys) {
      if (obj[k] !== undefined && obj[k] !== null) return obj[k];
    }
    return undefined;
  }

  function normalizeStats(data) {
    const list = Array.isArray(data) ? data
        : Array.isArray(data?.tensors) ? data.tensors : [];
    return list.map((t, i) => {
      const n = num(pick(t, 'n_elements', 'elements', 'n_weights', 'ne'));
      const bytes = num(pick(t, 'bytes', 'size_bytes', 'nbytes', 'n_bytes'));
      let bpw = num(pick(t, 'bits_per_weight', 'bpw'));
      if (bpw === null && n && bytes !== null) bpw = (bytes * 8) / n;
      return {
        index: i,
        name: String(pick(t, 'name', 'tensor') ?? `tensor ${i}`),
        type: String(pick(t, 'type', 'ggml_type') ?? '?').toUpperCase(),
        n, bytes, bpw,
        rmse: num(pick(t, 'rmse', 'rms_error')),
        maxAbs: num(pick(t, 'max_abs_error', 'max_abs_err', 'max_abs', 'max_error')),
        relErr: num(pick(t, 'relative_output_error', 'rel_output_error', 'relative_error',
                         'rel_error', 'output_error')),
      };
    });
  }

  async function openQuality(id) {
    const job = state.jobs.get(id) || {id};
    const section = $('quality');
    section.hidden = false;
    $('quality-title').textContent =
        `Quality: ${baseName(job.model) || job.model || id} → ${typeLabel(job)}`;
    $('quality-summary').textContent = 'Loading per-tensor statistics…';
    $('quality-charts').replaceChildren();
    $('quality-head').replaceChildren();
    $('quality-body').replaceChildren();
    state.quality = {jobId: id, rows: [], sortKey: 'index', sortDir: 1};
    section.scrollIntoView({block: 'start'});
    section.focus();
    try {
      const data = await api('GET', `/jobs/${encodeURIComponent(id)}/stats`,
                             {what: 'Loading the quality statistics'});
      if (!state.quality || state.quality.jobId !== id) return;
      const rows = normalizeStats(data);
      if (!rows.length) {
        $('quality-summary').textContent = 'The server has no per-tensor statistics for this job.';
        return;
      }
      state.quality.rows = rows;
      state.quality.summary = data && !Array.isArray(data) ? data : {};
      renderQuality();
    } catch (e) {
      if (!state.quality || state.quality.jobId !== id) return;
      $('quality-summary').textContent = e.message;
      $('quality-summary').classList.add('error');
    }
  }

  function closeQuality() {
    $('quality').hidden = true;
    $('quality-summary').classList.remove('error');
    state.quality = null;
  }

  function renderQuality() {
    const q = state.quality;
    const rows = q.rows;
    $('quality-summary').classList.remove('error');
    const totalBytes = rows.reduce((s, r) => s + (r.bytes || 0), 0);
    const totalN = rows.reduce((s, r) => s + (r.n || 0), 0);
    const worst = rows.filter((r) => r.relErr !== null).sort((a, b) => b.relErr - a.relErr)[0];
    let text = `${rows.length} tensors, ${fmtCount(totalN)} weights in ${fmtBytes(totalBytes)}`;
    if (totalN) text += ` (${((totalBytes * 8) / totalN).toFixed(2)} bits/weight)`;
    if (worst) text += `. Largest relative output error: ${worst.name} (${worst.type}), ${fmtSci(worst.relErr)}.`;
    $('quality-summary').textContent = text;
    $('quality-charts').replaceChildren(bytesByTypeChart(rows, totalBytes), errorChart(rows));
    renderStatsTable();
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // Where the bits went: the file's bytes split by tensor type, one stacked bar and a legend.
  function bytesByTypeChart(rows, totalBytes) {
    const byType = new Map();
    for (const r of rows) {
      const t = byType.get(r.type) || {bytes: 0, n: 0, count: 0, errSum: 0, errN: 0};
      t.bytes += r.bytes || 0;
      t.n += r.n || 0;
      t.count++;
      if (r.relErr !== null) {
        t.errSum += r.relErr;
        t.errN++;
      }
      byType.set(r.type, t);
    }
    const types = [...byType.entries()].sort((a, b) => b[1].bytes - a[1].bytes);
    const root = svg('svg', {
      viewBox: '0 0 1000 24', preserveAspectRatio: 'none', class: 'chart chart-stack',
      role: 'img', 'aria-label': 'Share of the file by tensor type',
    });
    const legend = el('ul', {class: 'legend'});
    let x = 0;
    for (const [type, t] of types) {
      const share = totalBytes ? (100 * t.bytes) / totalBytes : 0;
      const w = share * 10;
      const bpw = t.n ? ((t.bytes * 8) / t.n).toFixed(2) : '—';
      root.append(svg('rect', {x, y: 0, width: Math.max(w, 0.5), height: 24, fill: typeColor(type)},
        svg('title', {}, `${type}: ${fmtBytes(t.bytes)} (${share.toFixed(1)}%)`)));
      x += w;
      const swatch = el('span', {class: 'swatch', 'aria-hidden': 'true'});
      swatch.style.background = typeColor(type);
      const err = t.errN ? `, mean rel. error ${fmtSci(t.errSum / t.errN)}` : '';
      legend.append(el('li', {}, swatch, el('strong', {text: type}),
        ` ${t.count} tensor${t.count === 1 ? '' : 's'}, ${fmtBytes(t.bytes)} (${share.toFixed(1)}%), ${bpw} bits/weight${err}`));
    }
    return el('figure', {class: 'chart-box'},
      el('figcaption', {text: 'Where the bits went: file size by tensor type'}), root, legend);
  }

  // What they cost: each tensor's error, bars coloured by its type, in file order.
  function errorChart(rows) {
    const metric = rows.some((r) => r.relErr !== null) ? 'relErr' : 'rmse';
    const label = metric === 'relErr' ? 'relative output error' : 'RMSE';
    const max = Math.max(...rows.map((r) => r[metric] ?? 0), 0) || 1;
    const barW = 10;
    const root = svg('svg', {
      viewBox: `0 0 ${rows.length * barW} 100`, preserveAspectRatio: 'none',
      class: 'chart chart-bars', role: 'img',
      'aria-label': `Per-tensor ${label} in file order, largest ${fmtSci(max)}`,
    });
    rows.forEach((r, i) => {
      const v = r[metric] ?? 0;
      const h = (100 * v) / max;
      root.append(svg('rect', {
        x: i * barW + 1, y: 100 - h, width: barW - 2, height: Math.max(h, 0.4),
        fill: typeColor(r.type), class: 'err-bar',
      }, svg('title', {}, `${r.name} (${r.type}): ${label} ${fmtSci(r[metric])}`)));
    });
    return el('figure', {class: 'chart-box'},
      el('figcaption', {text: `What they cost: ${label} per tensor in file order (bar colour = type, tallest = ${fmtSci(max)})`}),
      root,
      el('div', {class: 'axis-labels', 'aria-hidden': 'true'},
        el('span', {text: rows[0] ? rows[0].name : ''}),
        el('span', {text: rows.length ? rows[rows.length - 1].name : ''})));
  }

  function renderStatsTable() {
    const q = state.quality;
    const head = $('quality-head');
    head.replaceChildren(...STAT_COLUMNS.map((c) => {
      const active = q.sortKey === c.key;
      const th = el('th', {
        scope: 'col', class: c.num ? 'num' : undefined,
        'aria-sort': active ? (q.sortDir > 0 ? 'ascending' : 'descending') : 'none',
      });
      th.append(el('button', {
        type: 'button', class: 'sort', 'data-key': c.key,
        text: c.label + (active ? (q.sortDir > 0 ? ' ▲' : ' ▼') : ''),
        onclick: () => {
          if (q.sortKey === c.key) q.sortDir = -q.sortDir;
          else {
            q.sortKey = c.key;
            q.sortDir = c.num && c.key !== 'index' ? -1 : 1;  // errors: worst first
          }
          renderStatsTable();
          head.querySelector(`button[data-key="${c.key}"]`).focus();
        },
      }));
      return th;
    }));
    const key = q.sortKey;
    const sorted = [...q.rows].sort((a, b) => {
      const va = a[key];
      const vb = b[key];
      if (va === null && vb === null) return a.index - b.index;
      if (va === null) return 1;  // missing values last either way
      if (vb === null) return -1;
      const c = typeof va === 'string' ? va.localeCompare(vb, undefined, {numeric: true}) : va - vb;
      return c * q.sortDir || a.index - b.index;
    });
    $('quality-body').replaceChildren(...sorted.map((r) => el('tr', {},
      ...STAT_COLUMNS.map((c) => {
        const v = r[c.key];
        const td = el('td', {class: c.num ? 'num' : undefined, 'data-label': c.label,
          text: c.fmt ? c.fmt(v) : v});
        if (c.key === 'type') {
          const swatch = el('span', {class: 'swatch', 'aria-hidden': 'true'});
          swatch.style.background = typeColor(r.type);  // CSSOM, allowed by a strict CSP
          td.prepend(swatch);
        }
        return td;
      }))));
  }

  // ------------------------------------------------------------------------------------------
  // Start-up.

  async function loadBackends() {
    try {
      const data = await api('GET', '/backends', {what: 'Loading the backends'});
      const list = Array.isArray(data) ? data : (data && (data.backends || data.data)) || [];
      const names = list.map((b) => (typeof b === 'string' ? b : b && (b.name || b.id))).filter(Boolean);
      $('server-info').textContent = names.length ? `Backends: ${names.join(', ')}` : '';
    } catch (e) {
      showError(e.message);
    }
  }

  function init() {
    $('job-form').addEventListener('submit', submitJob);
    $('qtype').addEventListener('change', () => {
      const custom = $('qtype').value === 'custom';
      $('qtype-custom-field').hidden = !custom;
      if (custom) $('qtype-custom').focus();
    });
    $('refresh').addEventListener('click', () => {
      clearErrors();
      state.keyDeclined = false;
      refreshJobs();
    });
    $('quality-close').addEventListener('click', () => {
      closeQuality();
      $('jobs-title').scrollIntoView();
      $('refresh').focus();
    });
    $('import-form').addEventListener('submit', submitImport);
    $('import-cancel').addEventListener('click', () => $('import-dialog').close());
    $('notices').hidden = true;
    // The first request may ask for the key; the others wait on the same prompt.
    refreshJobs().then(loadBackends);
    setInterval(() => {
      if (document.visibilityState === 'visible' && !state.keyPrompt) refreshJobs();
    }, 5000);
  }

  init();
})();
