//! The HTTP calls against a scripted server on 127.0.0.1: what goes out
//! (path, headers, body) and what each status becomes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;

use lab_model::worker::LEASE_SECONDS;

use super::*;
use crate::worker::tests::fake::{self, temp_dir};

/// Answers one connection per entry of `answers` (raw HTTP), then ends;
/// the handle gives each request as text (head lower-cased, then body).
fn scripted(answers: Vec<String>) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for answer in answers {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            seen.push(format!("{head}\n{}", String::from_utf8_lossy(&body)));
            conn.write_all(answer.as_bytes()).unwrap();
        }
        seen
    });
    (url, handle)
}

fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
}

fn json(status: &str, body: &str) -> String {
    answer(status, "content-type: application/json\r\n", body)
}

fn request() -> LeaseRequest {
    LeaseRequest {
        protocol: 1,
        kinds: vec!["analyze".into()],
        capabilities: vec!["gpu".into()],
        wait_s: 0,
    }
}

#[test]
fn a_lease_request_carries_the_token_and_its_answers_mean_what_they_say() {
    let lease = fake::lease(42, &[("manifest.json", b"{}")]);
    let (url, seen) = scripted(vec![
        answer("204 No Content", "", ""),
        json("200 OK", &serde_json::to_string(&lease).unwrap()),
        json(
            "401 Unauthorized",
            r#"{"error":"unauthorized","message":"no such token"}"#,
        ),
        json(
            "403 Forbidden",
            r#"{"error":"forbidden","message":"not a worker token"}"#,
        ),
        json(
            "503 Service Unavailable",
            r#"{"error":"busy","message":"starting"}"#,
        ),
    ]);
    let s = HttpServer::new(&format!("{url}/"), "tok-1").unwrap();
    assert_eq!(s.lease(&request()), Ok(None));
    assert_eq!(s.lease(&request()), Ok(Some(lease)));
    assert_eq!(s.lease(&request()), Err(CallError::Refused(401)));
    assert_eq!(s.lease(&request()), Err(CallError::Refused(403)));
    assert!(matches!(s.lease(&request()), Err(CallError::Transport(m)) if m.contains("503")));
    let seen = seen.join().unwrap();
    assert!(
        seen[0].starts_with("post /api/v1/worker/lease http/1.1\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("authorization: bearer tok-1\r\n"));
    assert!(seen[0].contains("content-type: application/json\r\n"));
    let body: LeaseRequest = serde_json::from_str(seen[0].split("\n\n").nth(1).unwrap()).unwrap();
    assert_eq!(body, request());
}

#[test]
fn a_heartbeat_hears_a_cancel_and_a_lost_lease() {
    let (url, seen) = scripted(vec![
        json(
            "200 OK",
            &format!(r#"{{"cancel":true,"lease_seconds":{LEASE_SECONDS}}}"#),
        ),
        json(
            "409 Conflict",
            r#"{"error":"lease_lost","message":"the job went to another worker"}"#,
        ),
        json("409 Conflict", r#"{"error":"other","message":"x"}"#),
        json("200 OK", "not json"),
    ]);
    let s = HttpServer::new(&url, "tok").unwrap();
    let beat = Heartbeat {
        lease: "L".into(),
        progress: 0.5,
        stage: "speech".into(),
    };
    assert!(s.heartbeat(9, &beat).unwrap().cancel);
    assert_eq!(s.heartbeat(9, &beat), Err(CallError::LeaseLost));
    assert!(matches!(
        s.heartbeat(9, &beat),
        Err(CallError::Answer { status: 409, .. })
    ));
    assert!(matches!(
        s.heartbeat(9, &beat),
        Err(CallError::Transport(_))
    ));
    let seen = seen.join().unwrap();
    assert!(seen[0].starts_with("post /api/v1/worker/jobs/9/heartbeat "));
    assert!(seen[0].ends_with(r#"{"lease":"L","progress":0.5,"stage":"speech"}"#));
}

#[test]
fn a_download_resumes_with_range_and_the_lease_header() {
    let (url, seen) = scripted(vec![
        answer(
            "206 Partial Content",
            "content-range: bytes 100-104/105\r\n",
            "hello",
        ),
        answer("200 OK", "", "whole"),
        answer(
            "206 Partial Content",
            "content-range: bytes 0-4/105\r\n",
            "wrong",
        ),
        json(
            "410 Gone",
            r#"{"error":"withdrawn","message":"the participant withdrew"}"#,
        ),
    ]);
    let s = HttpServer::new(&url, "tok").unwrap();
    let mut d = s.open_file(5, "L5", "media/main-00001.mkv", 100).unwrap();
    let mut body = String::new();
    d.body.read_to_string(&mut body).unwrap();
    assert_eq!((d.from, body.as_str()), (100, "hello"));
    let d = s.open_file(5, "L5", "events.jsonl", 0).unwrap();
    assert_eq!(d.from, 0);
    assert!(matches!(
        s.open_file(5, "L5", "events.jsonl", 100),
        Err(CallError::Transport(m)) if m.contains("bytes 0-4/105")
    ));
    let e = s.open_file(5, "L5", "events.jsonl", 0).err().unwrap();
    assert!(e.is_answer("withdrawn"));
    let seen = seen.join().unwrap();
    assert!(seen[0].starts_with("get /api/v1/worker/jobs/5/files/media/main-00001.mkv "));
    assert!(seen[0].contains("x-lab-lease: l5\r\n"));
    assert!(seen[0].contains("range: bytes=100-\r\n"));
    assert!(!seen[1].contains("range:"), "no Range from byte 0");
}

#[test]
fn a_result_is_streamed_with_its_sha_and_a_failure_posted() {
    let dir = temp_dir("client-put");
    let tar = dir.join("r.tar");
    std::fs::write(&tar, vec![b'x'; 3000]).unwrap();
    let (url, seen) = scripted(vec![
        json("200 OK", r#"{"status":"done"}"#),
        json(
            "422 Unprocessable Entity",
            r#"{"error":"checksum_mismatch","message":"no"}"#,
        ),
        json("200 OK", r#"{"status":"queued"}"#),
    ]);
    let s = HttpServer::new(&url, "tok").unwrap();
    let sha = fake::sha(&[b'x'; 3000]);
    assert_eq!(s.put_result(8, "L8", &sha, &tar).unwrap().status, "done");
    assert!(
        s.put_result(8, "L8", &sha, &tar)
            .unwrap_err()
            .is_answer("checksum_mismatch")
    );
    let req = FailRequest {
        lease: "L8".into(),
        error: "worker stopped".into(),
        retry: true,
        release: true,
    };
    assert_eq!(s.fail(8, &req).unwrap().status, "queued");
    let seen = seen.join().unwrap();
    assert!(seen[0].starts_with("put /api/v1/worker/jobs/8/result "));
    assert!(seen[0].contains(&format!("x-lab-sha256: {sha}\r\n")));
    assert!(seen[0].contains("x-lab-lease: l8\r\n"));
    assert!(seen[0].contains("content-type: application/x-tar\r\n"));
    assert!(seen[0].contains("content-length: 3000\r\n"));
    assert!(seen[0].ends_with(&"x".repeat(3000)));
    assert!(seen[2].starts_with("post /api/v1/worker/jobs/8/fail "));
    assert!(
        seen[2].ends_with(r#"{"lease":"L8","error":"worker stopped","retry":true,"release":true}"#)
    );
}

#[test]
fn no_server_is_a_transport_error_and_odd_addresses_are_refused() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = HttpServer::new(&format!("http://127.0.0.1:{port}"), "tok").unwrap();
    assert!(matches!(s.lease(&request()), Err(CallError::Transport(_))));
    assert!(HttpServer::new("https://lab:8443", "tok").is_err());
    assert!(HttpServer::new("lab:8080", "tok").is_err());
    assert!(HttpServer::new("http://lab:8080", "").is_err());
    assert!(HttpServer::new("http://lab:8080", "a b").is_err());
}

#[test]
fn statuses_map_to_what_a_worker_does() {
    assert_eq!(check_status(200, b""), Ok(()));
    assert_eq!(check_status(401, b""), Err(CallError::Refused(401)));
    assert!(matches!(
        check_status(429, b""),
        Err(CallError::Transport(_))
    ));
    assert!(matches!(
        check_status(502, b"<html>"),
        Err(CallError::Transport(_))
    ));
    assert_eq!(
        check_status(404, br#"{"error":"not_found","message":"no such file"}"#),
        Err(CallError::Answer {
            status: 404,
            code: "not_found".into(),
            message: "no such file".into()
        })
    );
}
