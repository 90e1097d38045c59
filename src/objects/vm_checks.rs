//! VM properties XO 6 derives by parsing: whether the VM's firmware is supported by its template's
//! `recommendations` (XML restrictions), and its exposure to XSA-468 (Windows PV drivers older than the fixed
//! releases), as xo-server's `xapi-object-to-xo` computes `isFirmwareSupported` and `vulnerabilities`.

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{json, Value};
use std::cmp::Ordering;

/// Whether `recommendations` (XAPI's `<restrictions><restriction field=… value=…/>…`) allows `firmware`: no
/// restriction named `supports-<firmware>` says `no`. Unparseable or absent recommendations allow it.
pub fn firmware_supported(recommendations: &str, firmware: &str) -> bool {
    // Most recommendations restrict no firmware: no XML to parse then (this runs for every VM of a listing).
    if !recommendations.contains("supports-") {
        return true;
    }
    let field = format!("supports-{firmware}");
    let mut reader = Reader::from_str(recommendations);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.name().as_ref() == b"restriction" => {
                let attr = |name: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
                };
                if attr(b"field").as_deref() == Some(field.as_str()) {
                    return attr(b"value").as_deref() != Some("no");
                }
            }
            Ok(Event::Eof) | Err(_) => return true,
            _ => {}
        }
    }
}

/// The last vulnerable release of each Windows PV driver, by vendor (XSA-468, May 2025).
const XSA468_VULNERABLE: &[(&str, &str, &str)] = &[
    ("Xen_Project", "xencons", "9.1.0.2"),
    ("Xen_Project", "xeniface", "9.1.0.0"),
    ("Xen_Project", "xenbus", "9.1.0.1"),
    ("Amazon_Inc_", "xeniface", "8.3.0"),
    ("XenServer", "xeniface", "9.1.12.93"),
    ("XenServer", "xenbus", "9.1.11.114"),
    ("Citrix", "xeniface", "9.1.1.11"),
    ("Citrix", "xenbus", "9.1.2.14"),
    ("XCP_ng", "xencons", "9.0.9048.9047"),
    ("XCP_ng", "xeniface", "9.0.9048.9047"),
    ("XCP_ng", "xenbus", "9.0.9048.9047"),
];

/// A version of one to four numeric parts.
fn parse_version(v: &str) -> Option<Vec<u64>> {
    let parts: Vec<u64> = v.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    (1..=4).contains(&parts.len()).then_some(parts)
}

fn compare(a: &[u64], b: &[u64]) -> Ordering {
    (0..a.len().max(b.len()))
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// XO's `vulnerabilities.xsa468` for a VM: `false`, or why it may be vulnerable. Only Windows VMs (platform
/// `device_id` `0002`) with PV drivers can be; drivers whose versions could not be checked count as vulnerable.
pub fn xsa468(platform: &Value, guest_metrics: Option<&Value>) -> Value {
    if platform.get("device_id").and_then(Value::as_str) != Some("0002") {
        return json!(false);
    }
    let Some(g) = guest_metrics else { return json!(false) };
    if g.get("PV_drivers_detected").and_then(Value::as_bool) != Some(true) {
        return json!(false);
    }
    let mut detected = false;
    for (driver, value) in g.get("PV_drivers_version").and_then(Value::as_object).into_iter().flatten() {
        if matches!(driver.as_str(), "major" | "minor" | "micro" | "build") {
            continue;
        }
        let Some((vendor, version)) = value.as_str().and_then(|v| v.split_once(' ')) else { continue };
        let Some(parsed) = parse_version(version) else { continue };
        let Some((_, _, vulnerable)) = XSA468_VULNERABLE.iter().find(|(v, d, _)| *v == vendor && d == driver) else {
            continue;
        };
        detected = true;
        if parse_version(vulnerable).is_some_and(|max| compare(&parsed, &max) != Ordering::Greater) {
            return json!({"reason": "pv-driver-version-vulnerable", "driver": driver, "version": version});
        }
    }
    if detected {
        json!(false)
    } else {
        json!({"reason": "no-pv-drivers-detected"})
    }
}

/// Whether `version` is at least `major.minor` (a platform version such as `3.4.1`).
pub fn at_least(version: &str, major: u64, minor: u64) -> bool {
    parse_version(version.split(['-', '+']).next().unwrap_or_default())
        .is_some_and(|v| compare(&v, &[major, minor]) != Ordering::Less)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_restrictions() {
        let rec = r#"<restrictions><restriction field="memory-static-max" max="137438953472"/><restriction field="supports-uefi" value="no"/></restrictions>"#;
        assert!(!firmware_supported(rec, "uefi"));
        assert!(firmware_supported(rec, "bios"));
        assert!(firmware_supported("", "uefi"));
        assert!(firmware_supported("<not xml", "uefi"));
    }

    #[test]
    fn xsa468_cases() {
        let win = json!({"device_id": "0002"});
        let gm = |v: Value| json!({"PV_drivers_detected": true, "PV_drivers_version": v});
        assert_eq!(xsa468(&json!({}), Some(&gm(json!({})))), json!(false), "not Windows");
        assert_eq!(xsa468(&win, None), json!(false));
        assert_eq!(xsa468(&win, Some(&json!({"PV_drivers_detected": false}))), json!(false));
        assert_eq!(
            xsa468(&win, Some(&gm(json!({"major": "9", "xenbus": "XCP_ng 9.0.9048.9047"})))),
            json!({"reason": "pv-driver-version-vulnerable", "driver": "xenbus", "version": "9.0.9048.9047"})
        );
        assert_eq!(xsa468(&win, Some(&gm(json!({"xenbus": "XCP_ng 9.1.100.1"})))), json!(false));
        assert_eq!(xsa468(&win, Some(&gm(json!({"major": "9"})))), json!({"reason": "no-pv-drivers-detected"}));
        assert!(at_least("3.4.0", 3, 4) && at_least("3.10", 3, 4) && !at_least("3.3.9", 3, 4) && !at_least("", 3, 4));
    }
}
