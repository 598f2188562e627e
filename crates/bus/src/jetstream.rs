//! The work queue of a cluster: one JetStream message per execution waiting for a runner.
//!
//! Stream `<PREFIX>_WORK` (work-queue retention: a message goes when a runner acknowledges it)
//! takes subjects `<prefix>.work.<execution id>`; runners share the durable pull consumer
//! `runners` and ask for one message whenever they have a free slot, so work goes to whoever
//! has room. Delivery is at least once — a message can come twice (a redelivery, a re-queue) —
//! and the claim that follows (the status compare-and-set `requested → scheduled` in the
//! store) makes each execution start exactly once.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::WorkQueue;
use crate::nats::{BusError, NatsConnection};

/// How long a message handed to a runner stays invisible to others before it is delivered
/// again (a runner acknowledges at once, so this only matters when one dies on receipt).
const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long one fetch waits for work before asking again.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// JetStream as the [`WorkQueue`].
pub struct JetStreamQueue {
    conn: NatsConnection,
    js: jetstream::Context,
    stream: stream::Stream,
    consumer: consumer::PullConsumer,
}

impl JetStreamQueue {
    /// Creates (or joins) the stream and the runners' consumer.
    pub async fn start(conn: NatsConnection) -> Result<JetStreamQueue, BusError> {
        let js = jetstream::new(conn.client.clone());
        let name = format!("{}_WORK", conn.prefix.to_ascii_uppercase().replace(['.', '-'], "_"));
        let stream = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{}.work.*", conn.prefix)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                BusError::JetStream(format!("cannot create the work stream {name} (is JetStream enabled, nats-server -js?): {e}"))
            })?;
        let consumer = stream
            .get_or_create_consumer(
                "runners",
                consumer::pull::Config {
                    durable_name: Some("runners".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| BusError::JetStream(format!("cannot create the runners' consumer on {name}: {e}")))?;
        Ok(JetStreamQueue { conn, js, stream, consumer })
    }

    async fn publish(&self, execution_id: &str, dedupe: bool) -> Result<(), String> {
        publish(&self.js, self.conn.subject("work", execution_id), execution_id, dedupe).await
    }
}

/// Publishes one work message and waits for the stream to have stored it.
async fn publish(js: &jetstream::Context, subject: String, execution_id: &str, dedupe: bool) -> Result<(), String> {
    let mut headers = async_nats::HeaderMap::new();
    if dedupe {
        // A second push of the same id within the duplicate window is dropped by the server.
        headers.insert("Nats-Msg-Id", execution_id);
    }
    let ack = js.publish_with_headers(subject, headers, Bytes::new()).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), ack)
        .await
        .map_err(|_| "no acknowledgement in 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[async_trait]
impl WorkQueue for JetStreamQueue {
    /// Hands the message to a task of its own: the caller (an API request) does not wait for
    /// JetStream, which during a NATS outage would be seconds.
    async fn push(&self, execution_id: String) {
        let (js, subject) = (self.js.clone(), self.conn.subject("work", &execution_id));
        tokio::spawn(async move {
            if let Err(e) = publish(&js, subject, &execution_id, true).await {
                tracing::warn!(execution = %execution_id, error = %e, "cannot queue the execution on JetStream; the sweeper queues it again");
            }
        });
    }

    async fn pop(&self) -> Option<String> {
        loop {
            let batch = self.consumer.fetch().max_messages(1).expires(FETCH_WAIT).messages().await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fetch work from JetStream; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(message) = batch.next().await {
                let Ok(message) = message else { continue };
                let Some(id) = message.subject.rsplit('.').next().map(str::to_string) else { continue };
                if let Err(e) = message.ack().await {
                    tracing::warn!(execution = %id, error = %e, "cannot acknowledge work; it may be delivered again (the claim keeps it to one start)");
                }
                return Some(id);
            }
        }
    }

    async fn requeue_if_missing(&self, execution_id: &str) -> bool {
        match self.stream.get_last_raw_message_by_subject(&self.conn.subject("work", execution_id)).await {
            Ok(_) => false,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => match self.publish(execution_id, false).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(execution = %execution_id, error = %e, "cannot queue the execution again");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(execution = %execution_id, error = %e, "cannot look for the execution on the work stream");
                false
            }
        }
    }
}
