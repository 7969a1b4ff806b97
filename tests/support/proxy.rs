//! A TCP proxy a test can cut: every connection through it is dropped and new ones are
//! refused for a while — a database that became unreachable.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
}

#[derive(Default)]
struct State {
    down_until: Option<Instant>,
    conns: Vec<AbortHandle>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let down = {
                    let s = st.lock().expect("lock");
                    s.down_until.is_some_and(|t| Instant::now() < t)
                };
                if down {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut s = st.lock().expect("lock");
                s.conns.retain(|h| !h.is_finished());
                s.conns.push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones for `d`; returns how many
    /// connections it dropped.
    pub fn cut(&self, d: Duration) -> usize {
        let mut s = self.state.lock().expect("lock");
        s.down_until = Some(Instant::now() + d);
        let open: Vec<AbortHandle> = s.conns.drain(..).filter(|h| !h.is_finished()).collect();
        for h in &open {
            h.abort();
        }
        open.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for h in self.state.lock().expect("lock").conns.drain(..) {
            h.abort();
        }
    }
}
