//! Stand-ins for APIs that cannot run here (Slack, PagerDuty, a Kubernetes API server): an
//! axum router served from a thread of its own.

/// Serves `app` on a free loopback port, from a thread of its own, for as long as the test
/// runs: the stand-ins for APIs that cannot run here. Gives the port.
pub fn serve_stand_in(app: axum::Router) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                axum::serve(listener, app)
                    .await
                    .expect("the stand-in serves");
            });
    });
    port
}
