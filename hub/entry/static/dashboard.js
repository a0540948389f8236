// The hub dashboard: reads /dashboard/api/* and draws the page, charts in SVG.
// No library, no build step: served as it is by the hub.
(function () {
  "use strict";

  const page = document.body.dataset.page;
  const main = document.getElementById("main");
  const SVG = "http://www.w3.org/2000/svg";
  const CHINA_MS = 8 * 3600 * 1000;
  const COLORS = ["#d9480f", "#1971c2", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599"];
  const PLATFORM_NAMES = {
    wechat_shop: "微信小店 WeChat Shop",
    douyin_shop: "抖店 Douyin Shop",
    kuaishou_shop: "快手小店 Kuaishou Shop",
    youzan: "有赞 Youzan",
  };

  // -- formatting ------------------------------------------------------------------
  function yuan(fen) {
    if (fen === null || fen === undefined) return "—";
    const sign = fen < 0 ? "-" : "";
    return sign + "¥" + (Math.abs(fen) / 100).toLocaleString("en-US", {
      minimumFractionDigits: 2, maximumFractionDigits: 2,
    });
  }
  function shortYuan(fen) {
    const v = fen / 100;
    if (Math.abs(v) >= 1e6) return "¥" + (v / 1e6).toFixed(1) + "M";
    if (Math.abs(v) >= 1e3) return "¥" + (v / 1e3).toFixed(1) + "k";
    return "¥" + v.toFixed(0);
  }
  function num(n) { return n === null || n === undefined ? "—" : n.toLocaleString("en-US"); }
  function pct(r) { return r === null || r === undefined ? "—" : (r * 100).toFixed(2) + "%"; }
  function china(iso, withDate) {
    if (!iso) return "—";
    const s = new Date(new Date(iso).getTime() + CHINA_MS).toISOString();
    return withDate ? s.slice(0, 10) + " " + s.slice(11, 16) : s.slice(11, 16);
  }
  function platformName(code) { return PLATFORM_NAMES[code] || code || "—"; }

  // -- DOM helpers (text only: nothing from the server becomes markup) ------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function getJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (response.status === 401) {
      location.href = "/dashboard/login?next=" + encodeURIComponent(location.pathname);
      throw new Error("signed out");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.reason : response.statusText);
    return body;
  }

  // -- charts -----------------------------------------------------------------------
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // Vertical bars (kind "bar") or a line with points (kind "line") over time.
  function timeChart(points, opts) {
    const W = 640, H = 240, L = 64, R = 12, T = 14, B = 30;
    const top = Math.max(0, ...points.map((p) => p.value));
    // Counts get whole-number ticks: a top that four steps divide.
    const max = opts.integer ? Math.max(4, Math.ceil(top / 4) * 4) : niceMax(top);
    const plotW = W - L - R, plotH = H - T - B;
    const step = points.length ? plotW / points.length : plotW;
    const chart = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "aria-label": opts.title, "data-chart": opts.name, "data-points": points.length,
    });
    for (let i = 0; i <= 4; i++) {
      const y = T + plotH - (plotH * i) / 4;
      chart.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
      chart.append(svg("text", { x: L - 6, y: y + 4, class: "tick", "text-anchor": "end" },
        opts.axis((max * i) / 4)));
    }
    const every = Math.max(1, Math.ceil(points.length / 8));
    points.forEach((p, i) => {
      if (i % every === 0) {
        chart.append(svg("text", {
          x: L + step * i + step / 2, y: H - 10, class: "tick", "text-anchor": "middle",
        }, p.label));
      }
    });
    if (!points.length) {
      chart.append(svg("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" },
        "No orders yet 暂无订单"));
      return chart;
    }
    if (opts.kind === "bar") {
      points.forEach((p, i) => {
        const h = (plotH * p.value) / max;
        chart.append(svg("rect", {
          x: L + step * i + step * 0.12, y: T + plotH - h,
          width: Math.max(1, step * 0.76), height: Math.max(h, p.value > 0 ? 1 : 0),
          fill: opts.color, "data-value": p.value, "data-at": p.at,
        }, svg("title", {}, `${p.label}  ${opts.format(p.value)}`)));
      });
    } else {
      const xy = points.map((p, i) => [L + step * i + step / 2, T + plotH - (plotH * p.value) / max]);
      chart.append(svg("path", {
        d: xy.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1)).join(" "),
        class: "line", stroke: opts.color,
      }));
      points.forEach((p, i) => {
        chart.append(svg("circle", {
          cx: xy[i][0], cy: xy[i][1], r: points.length > 60 ? 1.5 : 3, fill: opts.color,
          "data-value": p.value, "data-at": p.at,
        }, svg("title", {}, `${p.label}  ${opts.format(p.value)}`)));
      });
    }
    return chart;
  }

  // Horizontal bars, one per key (platform, streamer).
  function barsChart(rows, opts) {
    const W = 640, rowH = 34, L = 190, R = 110, T = 6;
    const H = T * 2 + Math.max(1, rows.length) * rowH;
    const max = Math.max(1, ...rows.map((r) => r.value));
    const chart = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "aria-label": opts.title, "data-chart": opts.name, "data-points": rows.length,
    });
    if (!rows.length) {
      chart.append(svg("text", { x: W / 2, y: H / 2 + 4, class: "empty", "text-anchor": "middle" },
        "No orders yet 暂无订单"));
    }
    rows.forEach((r, i) => {
      const y = T + i * rowH;
      const w = ((W - L - R) * r.value) / max;
      chart.append(svg("text", { x: L - 8, y: y + rowH / 2 + 4, class: "label", "text-anchor": "end" }, r.label));
      chart.append(svg("rect", {
        x: L, y: y + 6, width: Math.max(w, r.value > 0 ? 1 : 0), height: rowH - 12, rx: 3,
        fill: COLORS[i % COLORS.length], "data-value": r.value, "data-key": r.key,
      }, svg("title", {}, `${r.label}  ${opts.format(r.value)}`)));
      chart.append(svg("text", { x: L + w + 6, y: y + rowH / 2 + 4, class: "value" }, opts.format(r.value)));
    });
    return chart;
  }

  function panel(title, ...body) {
    return el("section", { class: "panel" }, el("h2", {}, title), ...body);
  }

  function table(columns, rows, empty) {
    if (!rows.length) return el("p", { class: "muted" }, empty || "Nothing here 暂无数据");
    return el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.title)))),
      el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => {
        const value = c.get ? c.get(row) : row[c.key];
        return el("td", { class: c.num ? "num" : null }, value instanceof Node ? value : (value === null || value === undefined || value === "" ? "—" : String(value)));
      })))),
    ));
  }

  function badge(text, kind) { return el("span", { class: "badge " + (kind || "") }, text); }

  // -- the live-session dashboard -----------------------------------------------------
  const params = new URLSearchParams(location.search);

  function card(label, value, figure, raw, sub) {
    return el("div", { class: "card", "data-figure": figure, "data-value": raw === null ? "" : raw },
      el("div", { class: "label" }, label),
      el("div", { class: "value" }, value),
      sub ? el("div", { class: "sub" }, sub) : null);
  }

  function sessionLabel(s) {
    return `${s.session_id} · ${china(s.starts_at, true)}–${china(s.ends_at)} · ${s.channel_account}`;
  }

  function chooser(data) {
    const current = params.get("session") || "";
    const select = el("select", {
      id: "session", "aria-label": "Live session 直播场次",
      onchange: (e) => {
        if (e.target.value) params.set("session", e.target.value); else params.delete("session");
        history.replaceState(null, "", "?" + params.toString());
        refresh();
      },
    },
      el("option", { value: "" }, "Current or latest session 当前/最近场次"),
      data.sessions.map((s) => el("option", { value: s.session_id, selected: current === s.session_id ? "selected" : null },
        (s.live ? "● " : "") + sessionLabel(s))),
      el("option", { value: "all", selected: current === "all" ? "selected" : null }, "All orders 全部订单"),
      el("option", { value: "none", selected: current === "none" ? "selected" : null }, "Outside sessions 非直播订单"));
    return select;
  }

  function renderOverview(data) {
    const f = data.figures;
    const s = data.selection.session;
    const title = s ? `Live session 直播场次 ${s.session_id}` :
      data.selection.session_id === "" ? "Orders outside live sessions 非直播订单" : "All orders 全部订单";
    const unit = data.grain === "minute" ? "minute 分钟" : "hour 小时";
    const label = (at) => (data.grain === "minute" ? china(at) : china(at, true));
    const series = data.series;
    main.replaceChildren(
      el("div", { class: "toolbar" },
        el("h1", {}, title),
        s && s.live ? badge("LIVE 直播中", "live") : null,
        chooser(data),
        el("span", { class: "muted", id: "updated" }, "Updated 更新于 " + china(data.now, true) + " (UTC+8)")),
      s ? el("p", { class: "muted" },
        `${china(s.starts_at, true)} – ${china(s.ends_at, true)} · ${s.streamers.join(", ")} · ${s.platforms.map(platformName).join(", ")}`) : null,
      el("div", { class: "cards" },
        card("GMV 成交额", yuan(f.gmv_fen), "gmv_fen", f.gmv_fen, "paid 已支付"),
        card("Net GMV 净成交额", yuan(f.net_gmv_fen), "net_gmv_fen", f.net_gmv_fen, "after refunds 扣除退款"),
        card("Orders 订单", num(f.orders), "orders", f.orders, `${num(f.paid_orders)} paid 已支付 · ${num(f.cancelled_orders)} cancelled 已取消`),
        card("Conversion 转化率", pct(f.conversion_rate), "conversion_rate", f.conversion_rate, `${num(f.views)} views 观看`),
        card("Average order value 客单价", yuan(f.average_order_value_fen), "average_order_value_fen", f.average_order_value_fen, "GMV / paid orders"),
        card("Refunds 退款", yuan(f.refunded_fen), "refunded_fen", f.refunded_fen, `${num(f.refunds)} refunds 笔`)),
      el("div", { class: "grid" },
        panel(`GMV per ${unit}`, timeChart(series.map((p) => ({ label: label(p.at), at: p.at, value: p.gmv_fen })),
          { name: "gmv", title: "GMV", kind: "bar", color: "#d9480f", format: yuan, axis: shortYuan })),
        panel(`Orders per ${unit}`, timeChart(series.map((p) => ({ label: label(p.at), at: p.at, value: p.orders })),
          { name: "orders", title: "Orders", kind: "line", color: "#1971c2", format: num, axis: num, integer: true })),
        panel("GMV by platform 各平台成交额", barsChart(data.by_platform.map((r) => ({ key: r.key, label: platformName(r.key), value: r.gmv_fen })),
          { name: "platforms", title: "GMV by platform", format: yuan })),
        panel("GMV by streamer 各主播成交额", barsChart(data.by_streamer.map((r) => ({ key: r.key, label: r.key || "(no streamer 无主播)", value: r.gmv_fen })),
          { name: "streamers", title: "GMV by streamer", format: yuan }))),
      panel("Per platform 分平台", table([
        { title: "Platform 平台", get: (r) => platformName(r.key) },
        { title: "GMV", num: true, get: (r) => yuan(r.gmv_fen) },
        { title: "Orders 订单", num: true, get: (r) => num(r.orders) },
        { title: "Paid 已支付", num: true, get: (r) => num(r.paid_orders) },
        { title: "AOV 客单价", num: true, get: (r) => yuan(r.average_order_value_fen) },
        { title: "Refunds 退款", num: true, get: (r) => yuan(r.refunded_fen) },
        { title: "Net 净额", num: true, get: (r) => yuan(r.net_gmv_fen) },
      ], data.by_platform)),
      panel("Sessions 各场次", table([
        { title: "Session 场次", get: (r) => r.key || "(outside sessions 非直播)" },
        { title: "GMV", num: true, get: (r) => yuan(r.gmv_fen) },
        { title: "Orders 订单", num: true, get: (r) => num(r.orders) },
        { title: "Views 观看", num: true, get: (r) => num(r.views) },
        { title: "Conversion 转化率", num: true, get: (r) => pct(r.conversion_rate) },
        { title: "AOV 客单价", num: true, get: (r) => yuan(r.average_order_value_fen) },
        { title: "Refunds 退款", num: true, get: (r) => yuan(r.refunded_fen) },
      ], data.by_session)),
    );
  }

  // -- operator pages -------------------------------------------------------------------
  const STATUS_KIND = {
    active: "ok", running: "ok", sent: "ok", rejected: "bad", suspended: "bad", failed: "bad",
    retrying: "warn", requested: "warn", unbound: "muted",
  };

  function renderBindings(data) {
    main.replaceChildren(el("h1", {}, "Bindings 店铺绑定"), panel(`${data.bindings.length} bindings`, table([
      { title: "Platform 平台", get: (r) => platformName(r.platform) },
      { title: "Shop 店铺", key: "shop_id" },
      { title: "Channel account 视频号", key: "channel_account" },
      { title: "Status 状态", get: (r) => badge(r.status, STATUS_KIND[r.status]) },
      { title: "Requested 申请日", key: "requested_on" },
      { title: "Review due 审核截止", key: "review_due_on" },
      { title: "Data scope 数据权限", key: "data_scope" },
      { title: "Qualification failures 资质问题", get: (r) => (r.failure_reasons || []).join("; ") },
    ], data.bindings, "No bindings yet 暂无绑定")));
  }

  function renderStock(data) {
    main.replaceChildren(el("h1", {}, "Stock 库存"),
      panel("Stock per SKU 各SKU库存", table([
        { title: "SKU", key: "sku" },
        { title: "On hand 在库", num: true, key: "on_hand" },
        { title: "Committed 已占用", num: true, key: "committed" },
        { title: "Reserved 预留", num: true, key: "reserved" },
        { title: "Safety 安全库存", num: true, key: "safety" },
        { title: "Available 可售", num: true, key: "available" },
        { title: "Low at 预警线", num: true, key: "low_stock_threshold" },
        { title: "Alert 预警", get: (r) => (r.low_stock_alert ? badge("LOW 库存低", "bad") : badge("ok", "ok")) },
      ], data.stock)),
      panel("Drift per platform 平台库存偏差", table([
        { title: "SKU", key: "sku" },
        { title: "Platform 平台", get: (r) => platformName(r.platform) },
        { title: "Shop 店铺", key: "shop_id" },
        { title: "Reported 平台显示", num: true, key: "reported" },
        { title: "Expected 应为", num: true, key: "expected" },
        { title: "Drift 偏差", num: true, key: "drift" },
        { title: "Detected 发现于", get: (r) => china(r.detected_at, true) },
      ], data.drift, "No drift 无偏差")),
      panel("Stock push dead letters 库存推送失败", table([
        { title: "Platform 平台", get: (r) => platformName(r.platform) },
        { title: "Shop 店铺", key: "shop_id" },
        { title: "SKU", key: "sku" },
        { title: "Quantity 数量", num: true, key: "quantity" },
        { title: "Attempts 尝试", num: true, key: "attempts" },
        { title: "Code", key: "code" },
        { title: "Message 原因", key: "message" },
        { title: "When 时间", get: (r) => china(r.updated_at, true) },
      ], data.dead_letters, "No dead letters 无失败推送")));
  }

  function renderHealth(data) {
    main.replaceChildren(
      el("div", { class: "toolbar" }, el("h1", {}, "Health 运行状态"),
        data.ok ? badge("all running 正常", "ok") : badge("attention 需关注", "bad")),
      panel("Platforms 平台", table([
        { title: "Platform 平台", get: (r) => platformName(r.platform) },
        { title: "Bindings active 已生效绑定", num: true, get: (r) => `${num(r.bindings_active)} / ${num(r.bindings)}` },
        { title: "Outbound queue 待推送", num: true, key: "queued" },
        { title: "Pushes sent 已推送", num: true, key: "sent" },
        { title: "Dead letters 失败", num: true, key: "dead_lettered" },
        { title: "Webhooks 2xx", num: true, key: "webhooks_2xx" },
        { title: "Webhooks 4xx", num: true, key: "webhooks_4xx" },
        { title: "Webhooks 5xx", num: true, key: "webhooks_5xx" },
      ], data.platforms, "No platforms yet 暂无平台")),
      panel("Tasks 任务", table([
        { title: "Task 任务", key: "name" },
        { title: "State 状态", get: (r) => badge(r.state, STATUS_KIND[r.state]) },
        { title: "Since 自", get: (r) => china(r.since, true) },
        { title: "Failures 失败次数", num: true, key: "failures" },
        { title: "Last error 最近错误", key: "last_error" },
      ], data.tasks)));
  }

  // -- polling ---------------------------------------------------------------------------
  const VIEWS = {
    overview: ["/dashboard/api/overview", renderOverview, 2000],
    bindings: ["/dashboard/api/bindings", renderBindings, 5000],
    stock: ["/dashboard/api/stock", renderStock, 2000],
    health: ["/dashboard/api/health", renderHealth, 2000],
  };
  const [url, render, every] = VIEWS[page];
  let busy = false;

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const query = page === "overview" && params.toString() ? "?" + params.toString() : "";
      render(await getJSON(url + query));
      document.body.dataset.loaded = String(Date.now());
    } catch (e) {
      if (e.message !== "signed out") {
        const note = el("p", { class: "error", role: "alert" }, "Could not load 加载失败: " + e.message);
        if (!main.querySelector(".error")) main.prepend(note);
      }
    } finally {
      busy = false;
    }
  }

  refresh();
  setInterval(refresh, every);
})();
