//! A plain JSON client for one node's HTTP API: every call answers its status
//! and its body (`null` when the body is not JSON). Test files add their own
//! helpers in an `impl Api` of their own.

use reqwest::StatusCode;
use serde_json::Value;

pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api { http: reqwest::Client::new(), url: url.to_owned() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}
