use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Ping {}

struct Handlers;

impl Handlers {
    #[kafka_handler(topic = "pings")]
    async fn on_ping(_event: Ping) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
