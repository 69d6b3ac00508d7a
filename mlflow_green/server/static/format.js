/* mlflow-green: how a figure is written for people — the same rules as mlflow_green/formatting.py.
 *
 * Both are checked against the same test vectors (tests/data/format_vectors.json): the Python
 * side in the unit tests, this file in a real browser (tests/server/test_view_browser.py).
 * Values are rounded once, exactly (toPrecision: ties away from zero), then only the decimal
 * point moves, so the unit and the digits never depend on floating-point division.
 *
 * Exposes window.GreenFormat: energyKwh, energyJ, emissionsKg, powerW, intensityGPerKwh,
 * sizeBytes, ratio, number, significant, count, plural, MISSING.
 */
"use strict";

(function () {
  const MISSING = "\u2014";
  const UNITS = {
    energyKwh: [[6, "GWh"], [3, "MWh"], [0, "kWh"], [-3, "Wh"], [-6, "mWh"], [-9, "\u00b5Wh"]],
    energyJ: [[9, "GJ"], [6, "MJ"], [3, "kJ"], [0, "J"], [-3, "mJ"], [-6, "\u00b5J"]],
    massKg: [[3, "t"], [0, "kg"], [-3, "g"], [-6, "mg"]],
    powerW: [[6, "MW"], [3, "kW"], [0, "W"], [-3, "mW"]],
    sizeBytes: [[12, "TB"], [9, "GB"], [6, "MB"], [3, "kB"], [0, "B"]],
  };

  function finite(x) {
    return typeof x === "number" && Number.isFinite(x);
  }

  /** |x| rounded to `digits` significant digits as {digits: "733", scale: -7} (= 733 × 10^-7). */
  function roundAbs(x, digits) {
    const parts = Math.abs(x).toPrecision(digits).split("e");
    const exp = parts.length > 1 ? parseInt(parts[1], 10) : 0;
    const [whole, fraction = ""] = parts[0].split(".");
    const all = (whole + fraction).replace(/^0+/, "") || "0";
    return { digits: all, scale: exp - fraction.length };
  }

  /** digits × 10^scale as a plain decimal string, without trailing fractional zeros. */
  function plain(digits, scale) {
    let text;
    if (scale >= 0) {
      text = digits + "0".repeat(scale);
    } else {
      const padded = digits.padStart(-scale + 1, "0");
      const cut = padded.length + scale;
      text = padded.slice(0, cut) + "." + padded.slice(cut);
      text = text.replace(/0+$/, "").replace(/\.$/, "");
    }
    return text;
  }

  function group(text) {
    const negative = text.startsWith("-");
    const body = negative ? text.slice(1) : text;
    const dot = body.indexOf(".");
    let whole = dot < 0 ? body : body.slice(0, dot);
    const rest = dot < 0 ? "" : body.slice(dot);
    const groups = [];
    while (whole.length > 3) {
      groups.unshift(whole.slice(-3));
      whole = whole.slice(0, -3);
    }
    groups.unshift(whole);
    return (negative ? "-" : "") + groups.join(",") + rest;
  }

  function significant(x, digits) {
    if (!finite(x)) return MISSING;
    if (x === 0) return "0";
    const r = roundAbs(x, digits || 3);
    return group((x < 0 ? "-" : "") + plain(r.digits, r.scale));
  }

  function scaled(x, units, zeroUnit, digits) {
    if (!finite(x)) return MISSING;
    if (x === 0) return "0 " + zeroUnit;
    const r = roundAbs(x, digits || 3);
    const magnitude = r.digits.length - 1 + r.scale;
    let chosen = units[units.length - 1];
    for (const unit of units) {
      if (magnitude >= unit[0]) {
        chosen = unit;
        break;
      }
    }
    return group((x < 0 ? "-" : "") + plain(r.digits, r.scale - chosen[0])) + " " + chosen[1];
  }

  function ratio(x) {
    if (!finite(x)) return MISSING;
    const a = Math.abs(x);
    if (a < 100) return significant(x, 3);
    const whole = a >= 2 ** 53 ? BigInt(a).toString() : a.toFixed(0);
    return group((x < 0 ? "-" : "") + whole);
  }

  function count(n) {
    if (n === null || n === undefined || !finite(Number(n))) return MISSING;
    const t = Math.trunc(Number(n));
    return group((t < 0 ? "-" : "") + BigInt(Math.abs(t)).toString());
  }

  window.GreenFormat = Object.freeze({
    MISSING,
    significant,
    energyKwh: (kwh) => scaled(kwh, UNITS.energyKwh, "Wh"),
    energyJ: (j) => scaled(j, UNITS.energyJ, "J"),
    emissionsKg: (kg) => (finite(kg) ? scaled(kg, UNITS.massKg, "g") + " CO2e" : MISSING),
    powerW: (w) => scaled(w, UNITS.powerW, "W"),
    intensityGPerKwh: (g) => (finite(g) ? significant(g, 3) + " g CO2e/kWh" : MISSING),
    sizeBytes: (n) => scaled(n, UNITS.sizeBytes, "B"),
    ratio,
    number: (x, digits) => (finite(x) ? significant(x, digits || 4) : MISSING),
    count,
    plural: (n, singular, pluralForm) =>
      count(n) + " " + (Math.trunc(Number(n)) === 1 ? singular : (pluralForm !== null && pluralForm !== undefined ? pluralForm : singular + "s")),
  });
})();
