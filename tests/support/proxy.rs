//! A TCP proxy a test can cut: every connection through it is dropped and new ones are
//! refused for a while — a database that became unreachable; or silence it: connections
//! stay open but nothing passes, ever, on those open then or made meanwhile — a network
//! that drops packets (a firewall that lost its state), where a client only finds out
//! by its own timeouts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
    /// Tells every open connection to fall silent.
    silence: tokio::sync::broadcast::Sender<()>,
}

#[derive(Default)]
struct State {
    down_until: Option<Instant>,
    silent_until: Option<Instant>,
    conns: Vec<AbortHandle>,
    /// Client sockets kept open with nothing passing (silenced).
    held: Vec<TcpStream>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let (silence, _) = tokio::sync::broadcast::channel::<()>(4);
        let silenced = silence.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let (down, silent) = {
                    let s = st.lock().expect("lock");
                    let now = Instant::now();
                    (
                        s.down_until.is_some_and(|t| now < t),
                        s.silent_until.is_some_and(|t| now < t),
                    )
                };
                if down {
                    drop(inbound);
                    continue;
                }
                if silent {
                    st.lock().expect("lock").held.push(inbound);
                    continue;
                }
                let mut quiet = silenced.subscribe();
                let held = st.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let silenced = tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                            _ = quiet.recv() => true,
                        };
                        if silenced {
                            held.lock().expect("lock").held.push(inbound);
                        }
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
            silence,
        }
    }

    /// Lets nothing through from now on on the connections open now, and for `d` on new
    /// ones, without closing any: a client sees silence, not an error.
    pub fn silence(&self, d: Duration) {
        self.state.lock().expect("lock").silent_until = Some(Instant::now() + d);
        let _ = self.silence.send(());
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
