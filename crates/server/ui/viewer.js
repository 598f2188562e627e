// The output viewer: any size of log, a screen at a time.
//
// Lines come from the server by number (GET /executions/{id}/lines), already rendered: text plus
// styled runs (the server is the one place that parses terminal escapes). The viewer keeps a
// cache of pages, a pool of row elements for what is on screen, and a scroll area whose height
// is capped (browsers cannot make an element taller than ~16M px), so position maps to line.
// Live output: the execution's SSE stream says that something was committed; the viewer then
// asks for the lines from its last known one on. Lines are addressed by number, so a reconnect,
// a server restart or a missed event can neither duplicate nor lose one.

const ROW = 18;              // px per row (no wrapping: rows have one height)
const PAGE = 500;            // lines per request
const MAX_PAGES = 200;       // pages kept in memory (100k lines)
const MAX_HEIGHT = 8_000_000; // px of scroll area before positions are scaled
const ERROR_PATTERN = String.raw`\b(error|errors|fail|failed|failure|fatal|panic|traceback|exception)\b`;

const PALETTE = ['#000000', '#cd3131', '#0dbc79', '#e5e510', '#2472c8', '#bc3fbc', '#11a8cd', '#e5e5e5',
  '#666666', '#f14c4c', '#23d18b', '#f5f543', '#3b8eea', '#d670d6', '#29b8db', '#ffffff'];

/** The CSS colour of a run's `fg`/`bg`: a palette index (0–255) or "#rrggbb". */
export function colour(c) {
  if (typeof c === 'string') return c;
  if (c < 16) return `var(--ansi-${c}, ${PALETTE[c]})`;
  if (c >= 232) { const v = 8 + (c - 232) * 10; return `rgb(${v},${v},${v})`; }
  const i = c - 16, steps = [0, 95, 135, 175, 215, 255];
  return `rgb(${steps[Math.floor(i / 36)]},${steps[Math.floor(i / 6) % 6]},${steps[i % 6]})`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const settings = {
  get(key, fallback) { try { return JSON.parse(localStorage.getItem('squall.' + key)) ?? fallback; } catch { return fallback; } },
  set(key, value) { localStorage.setItem('squall.' + key, JSON.stringify(value)); },
};

/** The request for a log's last screen, which a page may send before the viewer exists. */
export const lastLinesPath = (id) => `/api/v1/executions/${id}/lines?from=-${PAGE}&count=${PAGE}`;

/** Calls `f` once the frame now being prepared has been painted. */
const afterPaint = (f) => requestAnimationFrame(() => setTimeout(f, 0));

export class Viewer {
  /**
   * @param {HTMLElement} root where the viewer goes
   * @param {string} id the execution
   * @param {{api: Function, onStatus: Function, live: boolean}} opts
   */
  constructor(root, id, opts) {
    this.id = id;
    this.api = opts.api;
    this.onStatus = opts.onStatus || (() => {});
    this.hosts = opts.hosts || [];
    this.total = 0;          // lines the log has, as far as we know
    this.first = 0;          // first line on screen
    this.pages = new Map();  // page number → array of lines
    this.loading = new Map();
    this.following = true;
    this.newLines = 0;
    this.selected = null;    // [from, to] lines highlighted by #L links
    this.search = null;      // {pattern, hits: [n…], count, done, index}
    // Test and benchmark counters: lines missing or repeated in live answers; for lines that
    // arrived while watching, commit → painted in ms; navigation → first screen painted and
    // "go to line" Enter → that line painted, in ms.
    this.stats = { gaps: 0, dups: 0, refreshes: 0, painted: 0, latency: [] };
    this.liveFrom = Infinity; // lines from here on arrived while the page watched
    this.paintedUpTo = -1;
    this.timestamps = settings.get('timestamps', 'off');
    this.tint = settings.get('tint', true);
    this.wrap = settings.get('wrap', false);
    this.build(root);
    window.__viewer = this;
  }

  build(root) {
    const bar = el('div', 'toolbar');
    this.searchBox = el('input'); this.searchBox.type = 'search'; this.searchBox.placeholder = 'Search the whole log'; this.searchBox.setAttribute('aria-label', 'Search');
    this.regex = this.toggle(bar, '.*', 'Regular expression', settings.get('regex', false), (v) => settings.set('regex', v));
    this.caseSensitive = this.toggle(bar, 'Aa', 'Match case', settings.get('case', false), (v) => settings.set('case', v));
    bar.prepend(this.searchBox);
    this.prevHit = this.button(bar, '↑', 'Previous hit (Shift+Enter)', () => this.stepHit(-1));
    this.nextHit = this.button(bar, '↓', 'Next hit (Enter)', () => this.stepHit(1));
    this.hitInfo = el('span', 'hit-info');
    bar.append(this.hitInfo);
    this.onlyHits = this.toggle(bar, 'Matching lines', 'Show only matching lines', false, () => this.renderHitList());
    this.streamFilter = el('select'); this.streamFilter.setAttribute('aria-label', 'Streams');
    for (const [v, label] of [['', 'All streams'], ['stdout', 'stdout only'], ['stderr', 'stderr only'], ['output', 'squall notes only']]) {
      const o = el('option', '', label); o.value = v; this.streamFilter.append(o);
    }
    this.streamFilter.onchange = () => this.runSearch();
    bar.append(this.streamFilter);
    // A remote action's hosts: one filter each.
    this.hostFilter = el('select'); this.hostFilter.setAttribute('aria-label', 'Hosts');
    for (const [v, label] of [['', 'All hosts'], ...this.hosts.map((h) => [h, h])]) {
      const o = el('option', '', label); o.value = v; this.hostFilter.append(o);
    }
    this.hostFilter.onchange = () => this.runSearch();
    if (this.hosts.length) bar.append(this.hostFilter);
    this.button(bar, 'Next error', 'Jump to the next line that looks like an error', () => this.nextError());
    this.gotoBox = el('input', 'goto'); this.gotoBox.type = 'number'; this.gotoBox.min = '1'; this.gotoBox.placeholder = 'Line'; this.gotoBox.setAttribute('aria-label', 'Go to line');
    bar.append(this.gotoBox);
    const ts = el('select'); ts.setAttribute('aria-label', 'Timestamps');
    for (const [v, label] of [['off', 'No times'], ['absolute', 'Times'], ['relative', 'Relative times']]) {
      const o = el('option', '', label); o.value = v; ts.append(o);
    }
    ts.value = this.timestamps;
    ts.onchange = () => { this.timestamps = ts.value; settings.set('timestamps', ts.value); this.paint(true); };
    bar.append(ts);
    this.toggle(bar, 'stderr tint', 'Tint stderr lines', this.tint, (v) => { this.tint = v; settings.set('tint', v); this.paint(true); });
    this.toggle(bar, 'wrap', 'Wrap long lines', this.wrap, (v) => { this.wrap = v; settings.set('wrap', v); this.scroller.classList.toggle('wrap', v); this.goTo(this.first); });
    const raw = el('span', 'raw');
    for (const stream of ['stdout', 'stderr']) {
      const a = el('a', '', stream); a.href = `/api/v1/executions/${this.id}/${stream}`; a.download = `${this.id}.${stream}.log`; raw.append(a);
    }
    bar.append(raw);

    this.scroller = el('div', 'log' + (this.wrap ? ' wrap' : '')); this.scroller.tabIndex = 0; this.scroller.setAttribute('role', 'log');
    this.spacer = el('div', 'spacer');
    this.rows = el('div', 'rows');
    this.scroller.append(this.rows, this.spacer);
    this.pill = el('button', 'pill'); this.pill.hidden = true;
    this.pill.onclick = () => this.toEnd();
    this.hitList = el('div', 'hit-list'); this.hitList.hidden = true;
    this.status = el('div', 'viewer-status');
    root.append(bar, this.status, this.scroller, this.pill, this.hitList);

    this.searchBox.onkeydown = (e) => {
      if (e.key !== 'Enter') return;
      e.preventDefault();
      if (this.search && this.search.q === this.searchBox.value && this.search.key === this.searchKey()) this.stepHit(e.shiftKey ? -1 : 1);
      else this.runSearch();
    };
    this.gotoBox.onkeydown = (e) => {
      const n = parseInt(this.gotoBox.value, 10);
      if (e.key !== 'Enter' || !(n > 0)) return;
      this.jump = { n: Math.min(n, this.total) - 1, t0: performance.now() };
      this.goTo(n - 1, true);
    };
    this.scroller.addEventListener('scroll', () => this.onScroll());
    this.scroller.addEventListener('wheel', (e) => this.onWheel(e), { passive: false });
    this.scroller.addEventListener('keydown', (e) => this.onKey(e));
    this.rows.addEventListener('click', (e) => this.onGutterClick(e));
    new ResizeObserver(() => this.paint()).observe(this.scroller);
    window.addEventListener('hashchange', () => this.fromHash());
  }

  toggle(bar, label, title, on, changed) {
    const b = this.button(bar, label, title, () => { b.setAttribute('aria-pressed', String(b.getAttribute('aria-pressed') !== 'true')); changed(b.getAttribute('aria-pressed') === 'true'); });
    b.setAttribute('aria-pressed', String(on));
    b.classList.add('toggle');
    return b;
  }

  button(bar, label, title, action) {
    const b = el('button', '', label); b.type = 'button'; b.title = title; b.onclick = action; bar.append(b); return b;
  }

  // ---- geometry -------------------------------------------------------------------------

  get visible() { return Math.max(1, Math.ceil(this.scroller.clientHeight / ROW)); }
  // Wrapped, a viewport more: even a short log whose rows wrap past the screen can scroll.
  get height() { return Math.min(this.total * ROW, MAX_HEIGHT) + (this.wrap ? this.scroller.clientHeight : 0); }
  get scaled() { return this.total * ROW > MAX_HEIGHT; }
  // Positions map to lines, not pixels: past the height limit, and when wrapped rows have no
  // fixed height. The rows then stay in the viewport and the scroll bar says which line is on top.
  get lineMapped() { return this.scaled || this.wrap; }
  get maxFirst() { return Math.max(0, this.total - this.visible + 1); }

  lineAtScroll() {
    if (!this.lineMapped) return Math.floor(this.scroller.scrollTop / ROW);
    const maxScroll = this.height - this.scroller.clientHeight;
    return maxScroll <= 0 ? 0 : Math.round(this.scroller.scrollTop / maxScroll * this.maxFirst);
  }

  scrollForLine(n) {
    if (!this.lineMapped) return n * ROW;
    const maxScroll = this.height - this.scroller.clientHeight;
    return this.maxFirst === 0 ? 0 : n / this.maxFirst * maxScroll;
  }

  atBottom() {
    if (this.wrap) return this.scroller.scrollTop >= this.height - this.scroller.clientHeight - 2;
    return this.first >= this.maxFirst - 1;
  }

  // ---- data -----------------------------------------------------------------------------

  /**
   * Loads the first screen: the end of the log (or the line in the address). `lastLines` is
   * the answer to `lastLinesPath(id)` when the page asked for it early.
   */
  async start(live, lastLines) {
    const hash = this.parseHash();
    const page = await (lastLines ?? this.api(lastLinesPath(this.id)));
    this.accept(page);
    this.onStatus(page.status);
    if (hash) { this.selected = hash; this.goTo(hash[0], true); } else this.toEnd();
    // Since navigation started, to the frame that shows it.
    afterPaint(() => { this.stats.firstScreen = performance.now(); });
    if (live && !isDone(page.status)) this.follow(page);
  }

  /** Takes a `/lines` answer into the cache. */
  accept(page) {
    if (page.total > this.total) {
      if (!this.following) this.newLines += page.total - this.total;
      this.total = page.total;
    }
    let expected = page.from;
    for (const line of page.lines) {
      if (line.n !== expected) this.stats.gaps++;
      expected = line.n + 1;
      const p = Math.floor(line.n / PAGE);
      let lines = this.pages.get(p);
      if (!lines) { lines = []; this.pages.set(p, lines); }
      lines[line.n - p * PAGE] = line;
    }
    this.lastStatus = page.status;
    this.trimCache();
  }

  trimCache() {
    if (this.pages.size <= MAX_PAGES) return;
    const keep = Math.floor(this.first / PAGE);
    const far = [...this.pages.keys()].sort((a, b) => Math.abs(b - keep) - Math.abs(a - keep));
    for (const p of far.slice(0, this.pages.size - MAX_PAGES)) this.pages.delete(p);
  }

  line(n) {
    const lines = this.pages.get(Math.floor(n / PAGE));
    return lines && lines[n % PAGE];
  }

  /** Fetches the pages that rows first..first+visible need. */
  fetchAround(first) {
    const from = Math.floor(Math.max(0, first - PAGE / 4) / PAGE), to = Math.floor((first + this.visible + PAGE / 4) / PAGE);
    for (let p = from; p <= to; p++) {
      if (p * PAGE >= this.total) break;
      const have = this.pages.get(p);
      const full = have && have.length >= Math.min(PAGE, this.total - p * PAGE) && !have.some((l) => !l);
      if (full || this.loading.has(p)) continue;
      const req = this.api(`/api/v1/executions/${this.id}/lines?from=${p * PAGE}&count=${PAGE}`)
        .then((page) => { this.accept(page); this.paint(true); })
        .catch((e) => this.showError(e))
        .finally(() => this.loading.delete(p));
      this.loading.set(p, req);
    }
  }

  // ---- live -----------------------------------------------------------------------------

  follow(page) {
    this.liveFrom = page.total;
    const last = page.lines.length ? page.lines[page.lines.length - 1].seq : 0;
    const open = () => {
      if (this.source || isDone(this.lastStatus)) return;
      // From the record where the last known line starts: the stream replays only what is new.
      this.source = new EventSource(`/stream/v1/executions/${this.id}/output?after=${Math.max(0, (this.lastSeq ?? last) - 1)}`);
      this.source.addEventListener('st2.execution.output__create', (e) => { this.lastSeq = Number(e.lastEventId) || this.lastSeq; this.refresh(); });
      this.source.addEventListener('EOF', () => { this.close(); this.refresh(); });
      this.source.onerror = () => { this.connected = false; this.setStatusText(); };
      this.source.onopen = () => { this.connected = true; this.setStatusText(); this.refresh(); };
    };
    this.openStream = open;
    // Six SSE connections per origin is all a browser allows: a hidden tab gives its back.
    this.onVisibility = () => (document.hidden ? this.close() : open());
    document.addEventListener('visibilitychange', this.onVisibility);
    // A slow poll besides the stream: a status change with no output still shows.
    this.poll = setInterval(() => this.refresh(), 5000);
    open();
  }

  close() {
    if (this.source) { this.source.close(); this.source = null; }
  }

  stop() {
    this.close();
    clearInterval(this.poll);
    if (this.onVisibility) document.removeEventListener('visibilitychange', this.onVisibility);
  }

  /** Asks for the lines from the last known one on (it may have grown); one request at a time. */
  refresh() {
    if (this.refreshing) { this.again = true; return; }
    this.refreshing = true;
    const from = Math.max(0, this.total - 1);
    this.stats.refreshes++;
    this.api(`/api/v1/executions/${this.id}/lines?from=${from}&count=5000`)
      .then((page) => {
        const before = this.total;
        this.accept(page);
        if (page.lines.length && page.lines[0].n !== from) this.stats.gaps++;
        if (this.total < before) this.stats.dups++;
        this.onStatus(page.status);
        if (isDone(page.status)) { this.stop(); }
        if (page.lines.length === 5000 && page.total > from + 5000) this.again = true;
        if (this.following && !this.hasSelection()) this.toEnd(); else this.paint(true);
      })
      .catch((e) => this.showError(e))
      .finally(() => {
        this.refreshing = false;
        if (this.again) { this.again = false; this.refresh(); }
      });
  }

  setStatusText(text) {
    if (text !== undefined) this.statusText = text;
    const parts = [`${this.total.toLocaleString()} lines`];
    if (this.source && this.connected === false) parts.push('reconnecting…');
    if (this.statusText) parts.push(this.statusText);
    this.status.textContent = parts.join(' · ');
  }

  showError(e) { this.setStatusText(e.message || String(e)); }

  // ---- scrolling ------------------------------------------------------------------------

  goTo(n, center) {
    const target = Math.max(0, Math.min(center ? n - Math.floor(this.visible / 3) : n, this.maxFirst));
    this.following = false;
    this.first = target;
    this.scroller.scrollTop = this.scrollForLine(target);
    this.paint(true);
    this.flash = n;
  }

  toEnd() {
    this.following = true;
    this.newLines = 0;
    this.first = this.maxFirst;
    this.spacer.style.height = this.height + 'px';
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.paint(true);
  }

  onScroll() {
    if (this.programmatic) { this.programmatic = false; return; }
    this.first = Math.min(this.lineAtScroll(), this.maxFirst);
    this.following = this.atBottom() && !this.hasSelection();
    if (this.following) this.newLines = 0;
    this.paint();
  }

  onWheel(e) {
    if (!this.lineMapped) return;
    // Scaled positions would move thousands of lines per notch: move by lines instead.
    e.preventDefault();
    const lines = Math.round(e.deltaY / ROW) || Math.sign(e.deltaY);
    this.first = Math.max(0, Math.min(this.first + lines, this.maxFirst));
    this.following = this.atBottom();
    this.programmatic = true;
    this.scroller.scrollTop = this.scrollForLine(this.first);
    this.paint();
  }

  onKey(e) {
    const page = this.visible - 1;
    const moves = { Home: () => this.goTo(0), End: () => this.toEnd(), g: () => this.goTo(0), G: () => this.toEnd() };
    if (this.lineMapped) {
      moves.PageDown = () => this.goTo(this.first + page);
      moves.PageUp = () => this.goTo(this.first - page);
      moves.ArrowDown = () => this.goTo(this.first + 1);
      moves.ArrowUp = () => this.goTo(this.first - 1);
    }
    if (e.key === 'f' && (e.ctrlKey || e.metaKey) && document.activeElement !== this.searchBox) {
      e.preventDefault(); this.searchBox.focus(); return;
    }
    const move = moves[e.key];
    if (move && !e.ctrlKey && !e.metaKey && !e.altKey) { e.preventDefault(); move(); }
  }

  hasSelection() {
    const s = document.getSelection();
    return !!s && !s.isCollapsed && this.scroller.contains(s.anchorNode);
  }

  // ---- painting -------------------------------------------------------------------------

  paint(force) {
    this.spacer.style.height = this.height + 'px';
    const fromEnd = this.wrap && this.atBottom();
    const first = fromEnd ? Math.max(0, this.total - this.visible) : Math.min(this.first, this.maxFirst);
    const count = Math.min(this.visible + 1, Math.max(0, this.total - first));
    const offset = this.lineMapped ? this.scroller.scrollTop : first * ROW;
    this.rows.style.transform = `translateY(${offset}px)`;
    // Wrapped, the rows fill the viewport from the top line down — or, at the end, up from the last.
    this.rows.style.height = this.wrap ? this.scroller.clientHeight + 'px' : '';
    this.rows.classList.toggle('from-end', fromEnd);
    if (!force && first === this.paintedFirst && count === this.paintedCount) return;
    this.paintedFirst = first; this.paintedCount = count;
    this.fetchAround(first);
    while (this.rows.children.length < count) this.rows.append(el('div', 'row'));
    while (this.rows.children.length > count) this.rows.lastChild.remove();
    const start = this.line(0) ? Date.parse(this.line(0).timestamp) : null;
    for (let i = 0; i < count; i++) this.paintRow(this.rows.children[i], first + i, start);
    this.stats.painted = performance.now();
    if (this.jump && this.line(this.jump.n)) {
      const { t0 } = this.jump;
      this.jump = null;
      afterPaint(() => { this.stats.goto = performance.now() - t0; });
    }
    this.pill.hidden = this.following || this.newLines <= 0;
    this.pill.textContent = `▼ ${this.newLines.toLocaleString()} new line${this.newLines === 1 ? '' : 's'}`;
    this.setStatusText();
  }

  paintRow(row, n, start) {
    const line = this.line(n);
    const key = line ? `${n}:${line.text.length}:${line.unfinished ? 1 : 0}:${this.timestamps}:${this.tint}:${this.search?.key ?? ''}:${this.isSelected(n)}` : `${n}:-`;
    if (row.dataset.key === key) return;
    row.dataset.key = key;
    row.dataset.line = String(n + 1);
    row.className = 'row' + (line && this.tint && line.stream === 'stderr' ? ' stderr' : '') + (line && line.stream === 'output' ? ' note' : '') + (this.isSelected(n) ? ' selected' : '');
    row.replaceChildren();
    const gutter = el('span', 'n'); gutter.dataset.n = String(n + 1);
    row.append(gutter);
    if (!line) { row.append(el('span', 'loading', '…')); return; }
    if (this.timestamps !== 'off') {
      const t = Date.parse(line.timestamp);
      const text = this.timestamps === 'absolute' ? new Date(t).toISOString().slice(11, 23) : `+${((t - start) / 1000).toFixed(3)}s`;
      const stamp = el('span', 'ts'); stamp.dataset.ts = text; row.append(stamp);
    }
    if (line.host) { const h = el('span', 'host'); h.dataset.host = line.host; row.append(h); }
    row.append(this.renderText(line));
    if (n >= this.liveFrom && n > this.paintedUpTo && !line.unfinished) {
      this.paintedUpTo = n;
      if (this.stats.latency.length < 100000) this.stats.latency.push(Date.now() - Date.parse(line.timestamp));
    }
  }

  renderText(line) {
    const text = el('span', 'text');
    const runs = line.runs || [[line.text.length, {}]];
    let at = 0;
    for (const [len, style] of runs) {
      const part = line.text.slice(at, at + len);
      at += len;
      const link = style.link && /^https?:\/\//.test(style.link);
      const span = el(link ? 'a' : 'span');
      if (link) { span.href = style.link; span.rel = 'noopener noreferrer'; span.target = '_blank'; }
      let fg = style.fg, bg = style.bg;
      if (style.inverse) [fg, bg] = [bg ?? 'var(--bg)', fg ?? 'var(--fg)'];
      if (fg !== undefined) span.style.color = typeof fg === 'number' ? colour(fg) : fg;
      if (bg !== undefined) span.style.backgroundColor = typeof bg === 'number' ? colour(bg) : bg;
      if (style.bold) span.style.fontWeight = 'bold';
      if (style.dim) span.style.opacity = '0.6';
      if (style.italic) span.style.fontStyle = 'italic';
      if (style.underline) span.style.textDecoration = 'underline';
      this.highlight(span, part);
      text.append(span);
    }
    if (line.length) text.append(el('span', 'cut', ` … (${line.length.toLocaleString()} bytes; see the raw log)`));
    return text;
  }

  /** Marks the search's matches in one run of text (the server found the lines; this finds the columns). */
  highlight(span, part) {
    const re = this.search?.re;
    if (!re || !part) { span.textContent = part; return; }
    let at = 0;
    re.lastIndex = 0;
    for (const m of part.matchAll(re)) {
      if (!m[0]) break;
      span.append(document.createTextNode(part.slice(at, m.index)), el('mark', '', m[0]));
      at = m.index + m[0].length;
    }
    span.append(document.createTextNode(part.slice(at)));
  }

  // ---- line links -----------------------------------------------------------------------

  parseHash() {
    const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(location.hash);
    if (!m) return null;
    const a = parseInt(m[1], 10) - 1, b = m[2] ? parseInt(m[2], 10) - 1 : a;
    return [Math.min(a, b), Math.max(a, b)];
  }

  fromHash() {
    const range = this.parseHash();
    if (!range) return;
    this.selected = range;
    this.goTo(range[0], true);
  }

  isSelected(n) { return !!this.selected && n >= this.selected[0] && n <= this.selected[1]; }

  onGutterClick(e) {
    const gutter = e.target.closest('.n');
    if (!gutter) return;
    const n = parseInt(gutter.dataset.n, 10) - 1;
    this.selected = e.shiftKey && this.selected ? [Math.min(this.selected[0], n), Math.max(this.selected[0], n)] : [n, n];
    const [a, b] = this.selected;
    history.replaceState(null, '', a === b ? `#L${a + 1}` : `#L${a + 1}-L${b + 1}`);
    this.paint(true);
  }

  // ---- search ---------------------------------------------------------------------------

  searchKey() { return `${this.regex.getAttribute('aria-pressed')}${this.caseSensitive.getAttribute('aria-pressed')}${this.streamFilter.value}:${this.hostFilter.value}`; }

  searchQuery(q, extra) {
    const regex = this.regex.getAttribute('aria-pressed') === 'true', sensitive = this.caseSensitive.getAttribute('aria-pressed') === 'true';
    const stream = (this.streamFilter.value ? `&output_type=${this.streamFilter.value}` : '') + (this.hostFilter.value ? `&host=${encodeURIComponent(this.hostFilter.value)}` : '');
    return `/api/v1/executions/${this.id}/search?q=${encodeURIComponent(q)}&regex=${regex}&case=${sensitive}${stream}${extra}`;
  }

  browserPattern(q) {
    const regex = this.regex.getAttribute('aria-pressed') === 'true', sensitive = this.caseSensitive.getAttribute('aria-pressed') === 'true';
    try { return new RegExp(regex ? q : q.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), sensitive ? 'g' : 'gi'); } catch { return null; }
  }

  async runSearch() {
    const q = this.searchBox.value;
    if (this.searchAbort) this.searchAbort.abort();
    const filtered = !!(this.streamFilter.value || this.hostFilter.value);
    // A stream or host filter shows those lines (matching q, if any) as a list.
    if (filtered) this.onlyHits.setAttribute('aria-pressed', 'true');
    if (!q && !filtered) { this.search = null; this.hitInfo.textContent = ''; this.paint(true); this.renderHitList(); return; }
    const abort = new AbortController();
    this.searchAbort = abort;
    const search = { q, key: this.searchKey(), re: q ? this.browserPattern(q) : null, hits: [], lines: [], count: 0, done: false, index: -1 };
    this.search = search;
    this.hitInfo.textContent = 'searching…';
    const t0 = performance.now();
    try {
      const resp = await fetch(this.searchQuery(q, '&limit=10000'), { signal: abort.signal, credentials: 'same-origin' });
      if (!resp.ok) { const body = await resp.json().catch(() => ({})); throw new Error(body.faultstring || resp.statusText); }
      const reader = resp.body.getReader(), decoder = new TextDecoder();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        const parts = buffered.split('\n');
        buffered = parts.pop();
        for (const part of parts) {
          if (!part) continue;
          const event = JSON.parse(part);
          if (event.hit) {
            search.hits.push(event.hit.n); search.lines.push(event.hit); search.count++;
            if (search.hits.length === 1) { search.firstHit = performance.now() - t0; this.stepHit(1); }
          } else if (event.done) { search.count = event.count; search.done = true; search.elapsed = performance.now() - t0; }
          else if (event.error) throw new Error(event.error);
        }
        this.showHits();
      }
    } catch (e) {
      if (e.name !== 'AbortError') this.hitInfo.textContent = e.message;
      return;
    }
    this.showHits();
    this.paint(true);
    this.renderHitList();
  }

  showHits() {
    const s = this.search;
    if (!s) return;
    const count = s.count.toLocaleString() + (s.done ? '' : '+');
    this.hitInfo.textContent = s.count === 0 && s.done ? 'no hits' : `${s.index + 1} / ${count}`;
  }

  stepHit(dir) {
    const s = this.search;
    if (!s || !s.hits.length) return;
    s.index = (s.index + dir + s.hits.length) % s.hits.length;
    this.selected = [s.hits[s.index], s.hits[s.index]];
    this.goTo(s.hits[s.index], true);
    this.showHits();
  }

  renderHitList() {
    const on = this.onlyHits.getAttribute('aria-pressed') === 'true' && this.search;
    this.hitList.hidden = !on;
    this.scroller.hidden = !!on;
    if (!on) return;
    this.hitList.replaceChildren();
    for (const line of this.search.lines) {
      const row = el('div', 'row'); row.dataset.line = String(line.n + 1);
      const gutter = el('span', 'n'); gutter.dataset.n = String(line.n + 1);
      row.append(gutter);
      if (line.host) { const h = el('span', 'host'); h.dataset.host = line.host; row.append(h); }
      row.append(this.renderText(line));
      row.onclick = () => { this.onlyHits.setAttribute('aria-pressed', 'false'); this.renderHitList(); this.selected = [line.n, line.n]; this.goTo(line.n, true); };
      this.hitList.append(row);
    }
    if (this.search.count > this.search.lines.length) this.hitList.append(el('p', 'quiet', `… and ${(this.search.count - this.search.lines.length).toLocaleString()} more`));
  }

  async nextError() {
    const from = (this.selected ? this.selected[0] : this.first) + 1;
    const url = `/api/v1/executions/${this.id}/search?q=${encodeURIComponent(ERROR_PATTERN)}&regex=true&case=false&from=${from}&stop_after=1`;
    const resp = await fetch(url, { credentials: 'same-origin' });
    const events = (await resp.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const hit = events.find((e) => e.hit);
    if (!hit) { this.setStatusText('no error after this line'); return; }
    this.selected = [hit.hit.n, hit.hit.n];
    this.goTo(hit.hit.n, true);
  }
}

export function isDone(status) {
  return ['succeeded', 'failed', 'timeout', 'canceled', 'abandoned'].includes(status);
}
