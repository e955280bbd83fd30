use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

/// Not an error type: no `std::error::Error`, no conversion into `HandlerError`.
#[derive(Debug)]
struct Rejected {
    code: u16,
}

#[kafka_handler(topic = "orders")]
async fn on_order(order: Order) -> Result<(), Rejected> {
    let _ = order.id;
    Err(Rejected { code: 409 })
}

fn main() {}
