//! Parcel labels as a printer and a person get them: the sample alert
//! rendered in Chinese and English with a photo, the ZPL parsed back (framing,
//! size, every graphic field's byte count and box), the QR code read back
//! from the PNG, the `tocsin label` command, and the admin route.

mod support;

use std::io::Cursor;
use std::process::Command;

use tocsin::channel::label::{self, LabelOptions};
use tocsin::channel::AlertContent;

const W: u32 = 812;
const H: u32 = 1218;
const PUBLIC: &str = "http://127.0.0.1:9464";

fn sample() -> AlertContent {
    AlertContent::from_xml(3, tocsin::demo::sample::SAMPLE_ALERT).unwrap()
}

fn opts(lang: &str) -> LabelOptions {
    LabelOptions {
        public_url: PUBLIC.into(),
        language: lang.into(),
    }
}

/// A 480×640 JPEG: a face-like disc on a gradient.
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(480, 640, |x, y| {
        let (dx, dy) = (x as f32 - 240.0, y as f32 - 260.0);
        if dx * dx + dy * dy < 150.0 * 150.0 {
            image::Rgb([230, 190, 160])
        } else {
            let g = (y * 255 / 640) as u8;
            image::Rgb([g, g / 2, 255 - g])
        }
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .unwrap();
    assert!(out.starts_with(&[0xff, 0xd8]));
    out
}

/// One `^FO x,y ^GFA,…` element as parsed back from the ZPL.
#[derive(Debug)]
struct Field {
    x: u32,
    y: u32,
    row_bytes: u32,
    rows: u32,
    data: Vec<u8>,
}

impl Field {
    fn right(&self) -> u32 {
        self.x + self.row_bytes * 8
    }
    fn bottom(&self) -> u32 {
        self.y + self.rows
    }
    fn overlaps(&self, o: &Field) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }
    fn black(&self) -> u32 {
        self.data.iter().map(|b| b.count_ones()).sum()
    }
}

/// A small ZPL reader for what the renderer writes; panics on anything else.
fn parse_zpl(zpl: &[u8]) -> Vec<Field> {
    let text = std::str::from_utf8(zpl).expect("ZPL is ASCII");
    assert!(text.is_ascii());
    let body = text.trim_end();
    assert!(body.starts_with("^XA"), "no ^XA");
    assert!(body.ends_with("^XZ"), "no ^XZ");
    assert_eq!(body.matches("^XA").count(), 1);
    assert_eq!(body.matches("^XZ").count(), 1);
    let cmds: Vec<&str> = body
        .split('^')
        .skip(1)
        .map(|c| c.trim_end_matches('\n'))
        .collect();
    assert!(cmds.contains(&"PW812"), "{:?}", &cmds[..5]);
    assert!(cmds.contains(&"LL1218"));
    assert!(cmds.contains(&"CI28"));
    let mut fields = Vec::new();
    let mut at: Option<(u32, u32)> = None;
    for c in &cmds {
        if let Some(p) = c.strip_prefix("FO") {
            let (x, y) = p.split_once(',').unwrap();
            at = Some((x.parse().unwrap(), y.parse().unwrap()));
        } else if let Some(p) = c.strip_prefix("GF") {
            let parts: Vec<&str> = p.splitn(5, ',').collect();
            assert_eq!(parts[0], "A", "ASCII hex graphic");
            let total: usize = parts[1].parse().unwrap();
            let field_total: usize = parts[2].parse().unwrap();
            let row: usize = parts[3].parse().unwrap();
            assert_eq!(total, field_total);
            let data = hex::decode(parts[4]).expect("hex data");
            assert_eq!(data.len(), total, "declared byte count");
            assert!(row > 0 && total % row == 0, "row bytes × rows = total");
            let (x, y) = at.take().expect("^GF without ^FO");
            fields.push(Field {
                x,
                y,
                row_bytes: row as u32,
                rows: (total / row) as u32,
                data,
            });
        } else if *c == "FS" {
            assert!(at.is_none(), "^FO without a field");
        } else {
            assert!(
                ["XA", "XZ", "PW812", "LL1218", "LH0,0", "CI28"].contains(c),
                "unexpected command ^{c}"
            );
        }
    }
    fields
}

/// Check a label's ZPL and PNG; returns the fields and the PNG as gray.
fn check_label(l: &label::Label) -> (Vec<Field>, image::GrayImage) {
    assert_eq!((l.width, l.height), (W, H));
    let fields = parse_zpl(&l.zpl);
    assert!(fields.len() >= 4, "{} fields", fields.len());
    for f in &fields {
        assert!(f.x >= 24 && f.y >= 24, "{f:?} in the margin");
        assert!(
            f.right() <= W && f.bottom() <= H - 24,
            "{f:?} off the label"
        );
    }
    for (i, a) in fields.iter().enumerate() {
        for b in &fields[i + 1..] {
            assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
        }
    }
    let png = image::load_from_memory_with_format(&l.png, image::ImageFormat::Png)
        .expect("PNG decodes")
        .to_luma8();
    assert_eq!(png.dimensions(), (W, H));
    // The PNG is exactly the ZPL's dots.
    let mut black_png = 0u32;
    for p in png.pixels() {
        assert!(p.0[0] == 0 || p.0[0] == 255);
        black_png += u32::from(p.0[0] == 0);
    }
    assert_eq!(black_png, fields.iter().map(Field::black).sum::<u32>());
    for f in &fields {
        for (i, byte) in f.data.iter().enumerate() {
            for bit in 0..8 {
                let x = f.x + (i as u32 % f.row_bytes) * 8 + bit;
                let y = f.y + i as u32 / f.row_bytes;
                if byte & (0x80 >> bit) != 0 {
                    assert_eq!(png.get_pixel(x, y).0[0], 0, "dot {x},{y}");
                }
            }
        }
    }
    (fields, png)
}

fn read_qr(png: &image::GrayImage) -> Vec<String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(
        png.width() as usize,
        png.height() as usize,
        |x, y| png.get_pixel(x as u32, y as u32).0[0],
    );
    img.detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, s)| s))
        .collect()
}

#[test]
fn sample_renders_in_both_languages_and_reads_back() {
    let alert = sample();
    let photo = jpeg();
    for lang in ["zh-CN", "en-US"] {
        let with = label::render(&alert, Some(&photo), &opts(lang)).unwrap();
        let (fields, png) = check_label(&with);
        let info = alert.info_for(lang).unwrap();
        assert_eq!(info.language, lang);
        let link = alert.public_link(Some(info), PUBLIC);
        assert_eq!(
            link,
            "https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001"
        );
        assert_eq!(read_qr(&png), [link], "{lang}");
        // The photo box is dark with the photo, a frame and two words without.
        let without = label::render(&alert, None, &opts(lang)).unwrap();
        let (plain, _) = check_label(&without);
        let photo_dots = |fs: &[Field]| {
            fs.iter()
                .find(|f| f.x == 24 && (282..300).contains(&f.y))
                .map(Field::black)
                .expect("photo field")
        };
        assert!(
            photo_dots(&fields) > 3 * photo_dots(&plain),
            "{} vs {}",
            photo_dots(&fields),
            photo_dots(&plain)
        );
        // The top of the label is the black banner.
        assert_eq!((fields[0].x, fields[0].y), (24, 24));
        assert!(fields[0].black() > fields[0].data.len() as u32 * 8 / 2);
    }
    // The two languages print different text.
    let zh = label::render(&alert, None, &opts("zh-CN")).unwrap();
    let en = label::render(&alert, None, &opts("en-US")).unwrap();
    assert_ne!(zh.zpl, en.zpl);
}

#[test]
fn an_alert_without_web_links_to_its_public_page() {
    let xml = tocsin::demo::sample::remove_elements(tocsin::demo::sample::SAMPLE_ALERT, "web");
    let alert = AlertContent::from_xml(42, &xml).unwrap();
    let l = label::render(&alert, None, &opts("en-US")).unwrap();
    let (_, png) = check_label(&l);
    assert_eq!(read_qr(&png), [format!("{PUBLIC}/v1/alerts/42")]);
}

#[test]
fn a_cancel_prints_a_withdrawal() {
    let xml = tocsin::demo::sample::SAMPLE_ALERT
        .replace(
            "<msgType>Alert</msgType>",
            "<msgType>Cancel</msgType>\n  <references>police.gz@example.gov.cn,GZPSB-CA-2026-1129-0001,2026-11-29T09:00:00+08:00</references>",
        )
        .replace("-0001</identifier>", "-0002</identifier>");
    let alert = AlertContent::from_xml(4, &xml).unwrap();
    let w = label::render_withdrawal(&alert, &opts("zh-CN")).unwrap();
    let (fields, png) = check_label(&w);
    assert_eq!(fields.len(), 4);
    assert!(read_qr(&png).is_empty(), "a withdrawal has no QR code");
}

fn tocsin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(args)
        .env("TOCSIN_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn the_label_command_writes_png_and_zpl() {
    let dir = tempfile::tempdir().unwrap();
    let xml = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/samples/missing-child.xml"
    );
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, jpeg()).unwrap();
    let (png, zpl) = (dir.path().join("l.png"), dir.path().join("l.zpl"));
    let out = tocsin(&[
        "label",
        xml,
        "--png",
        png.to_str().unwrap(),
        "--zpl",
        zpl.to_str().unwrap(),
        "--lang",
        "zh-CN",
        "--photo",
        photo.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let l = label::Label {
        zpl: std::fs::read(&zpl).unwrap(),
        png: std::fs::read(&png).unwrap(),
        width: W,
        height: H,
    };
    let (_, gray) = check_label(&l);
    assert_eq!(
        read_qr(&gray),
        ["https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001"]
    );
    // Same bytes as the library gives.
    let lib = label::render(&sample(), Some(&jpeg()), &opts("zh-CN")).unwrap();
    assert_eq!(lib.zpl, l.zpl);

    // Clear errors: no output named, a missing file, a photo that is no image.
    let out = tocsin(&["label", xml]);
    assert!(!out.status.success());
    let out = tocsin(&["label", "/nonexistent.xml", "--png", "/tmp/x.png"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.xml"));
    let out = tocsin(&["label", xml, "--png", png.to_str().unwrap(), "--photo", xml]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither a JPEG nor a PNG"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_route_serves_the_label_png() {
    use support::*;
    use tocsin::daemon::{Daemon, Extras};
    use tocsin::ingest::Receipt;

    let dir = tempfile::tempdir().unwrap();
    let (addr, _seen) = partner("s").await;
    let d = Daemon::start(
        settings(dir.path(), &[("p1".into(), addr, "s")]),
        Extras::default(),
    )
    .await
    .unwrap();
    let c = client(dir.path(), d.ingest_addr).await;
    let r = c
        .submit(&sign(&alert_xml("label-1"), "gz-1", &key(1)))
        .await
        .unwrap();
    let Receipt::Accepted { receipt, .. } = r else {
        panic!("{r:?}")
    };
    let base = format!("http://{}", d.admin_addr);
    for path in [
        format!("/v1/alerts/{receipt}/label.png?lang=en-US"),
        "/v1/alerts/1/label.png".to_string(),
    ] {
        let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], "image/png");
        let png = image::load_from_memory(&resp.bytes().await.unwrap())
            .unwrap()
            .to_luma8();
        assert_eq!(png.dimensions(), (W, H));
        assert_eq!(
            read_qr(&png),
            ["https://police.example.gov.cn/alerts/GZPSB-CA-2026-1129-0001"]
        );
    }
    let resp = reqwest::get(format!("{base}/v1/alerts/999/label.png"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = reqwest::get(format!("{base}/v1/alerts/1/label.png?lang=%5EXZ"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    c.close().await;
    d.shutdown().await;
}
