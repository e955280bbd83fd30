//! `/health/ready` sampled every 100 ms in the background, for tests that check when readiness
//! changed against what they did to the brokers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One sample: when it was asked, the status, the body.
pub type Sample = (Instant, u16, String);

pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling the runtime's endpoint at `addr`.
    pub fn start(addr: SocketAddr) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopped) = (samples.clone(), stop.clone());
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Acquire) {
                let at = Instant::now();
                if let Ok(response) = client.get(format!("http://{addr}/health/ready")).send().await {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    into.lock().unwrap().push((at, status, body));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { samples, stop, task }
    }

    /// The latest status.
    pub fn last_status(&self) -> Option<u16> {
        self.samples.lock().unwrap().last().map(|s| s.1)
    }

    /// Waits (up to `timeout`) until the latest sample answered `status`.
    pub async fn until(&self, status: u16, what: &str, timeout: Duration) {
        super::eventually(what, timeout, || async {
            match self.last_status() {
                Some(now) if now == status => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Stops sampling; every sample taken, in order.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("sampler");
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}
