//! MQTT 3.1.1 behaviour end to end, with rumqttc's v4 client against a broker on an ephemeral port.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rumqttc::{LastWill, QoS};
use std::time::Duration;

#[tokio::test]
async fn qos_0_1_2_delivered_both_directions_at_the_lower_qos() {
    let (broker, addr) = start().await;
    let mut sub = v4(v4_opts(addr, "sub"));
    sub.connack().await;
    sub.client.subscribe("t/#", QoS::ExactlyOnce).await.unwrap();
    let ack = sub.suback().await;
    assert_eq!(
        ack.return_codes,
        [rumqttc::SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );

    let mut publ = v4(v4_opts(addr, "pub"));
    publ.connack().await;
    for (i, q) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publ.client
            .publish(format!("t/{i}"), q, false, vec![i as u8])
            .await
            .unwrap();
        let p = sub.publish().await;
        assert_eq!(p.topic, format!("t/{i}"));
        assert_eq!(p.qos, q);
        assert_eq!(&p.payload[..], &[i as u8]);
        assert!(!p.retain);
    }
    // A QoS 1 subscription gets QoS 2 messages at QoS 1 [MQTT-3.8.4-8].
    let mut low = v4(v4_opts(addr, "low"));
    low.connack().await;
    low.client.subscribe("t/x", QoS::AtLeastOnce).await.unwrap();
    low.suback().await;
    publ.client
        .publish("t/x", QoS::ExactlyOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(low.publish().await.qos, QoS::AtLeastOnce);
    broker.shutdown().await;
}

#[tokio::test]
async fn per_publisher_order_preserved_qos1() {
    let (broker, addr) = start().await;
    let mut sub = v4(v4_opts(addr, "sub"));
    sub.connack().await;
    sub.client.subscribe("o", QoS::AtLeastOnce).await.unwrap();
    sub.suback().await;
    let mut publ = v4(v4_opts(addr, "pub"));
    publ.connack().await;
    for i in 0..200u32 {
        publ.client
            .publish("o", QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    for i in 0..200u32 {
        let p = sub.publish().await;
        assert_eq!(&p.payload[..], &i.to_be_bytes());
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn retained_message_stored_replaced_and_deleted_mqtt_3_3_1_5() {
    let (broker, addr) = start().await;
    let mut publ = v4(v4_opts(addr, "pub"));
    publ.connack().await;
    publ.client
        .publish("r/a", QoS::AtLeastOnce, true, "1")
        .await
        .unwrap();
    publ.acked().await;
    publ.client
        .publish("r/a", QoS::AtLeastOnce, true, "2")
        .await
        .unwrap();
    publ.acked().await;
    publ.client
        .publish("r/b", QoS::AtLeastOnce, true, "b")
        .await
        .unwrap();
    publ.acked().await;

    let mut sub = v4(v4_opts(addr, "sub"));
    sub.connack().await;
    sub.client.subscribe("r/+", QoS::AtLeastOnce).await.unwrap();
    sub.suback().await;
    let mut got = [sub.publish().await, sub.publish().await];
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert!(
        got.iter().all(|p| p.retain),
        "retained messages carry RETAIN on subscribe [MQTT-3.3.1-8]"
    );
    assert_eq!(&got[0].payload[..], b"2");
    assert_eq!(&got[1].payload[..], b"b");

    // Empty payload deletes [MQTT-3.3.1-10]; it still goes to current subscribers.
    publ.client
        .publish("r/a", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    publ.acked().await;
    let live = sub.publish().await;
    assert!(live.payload.is_empty());
    assert!(
        !live.retain,
        "forwarded to existing subscriptions with RETAIN 0 [MQTT-3.3.1-9]"
    );
    let mut late = v4(v4_opts(addr, "late"));
    late.connack().await;
    late.client
        .subscribe("r/a", QoS::AtLeastOnce)
        .await
        .unwrap();
    late.suback().await;
    late.no_publish(Duration::from_millis(300)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn persistent_session_gets_queued_messages_after_reconnect_mqtt_3_1_2_4() {
    let (broker, addr) = start().await;
    let mut o = v4_opts(addr, "keeper");
    o.set_clean_session(false);
    let mut sub = v4(o.clone());
    assert!(!sub.connack().await.session_present);
    sub.client.subscribe("q", QoS::AtLeastOnce).await.unwrap();
    sub.suback().await;
    sub.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(T, sub.task).await;

    let mut publ = v4(v4_opts(addr, "pub"));
    publ.connack().await;
    for i in 0..5u8 {
        publ.client
            .publish("q", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
        publ.acked().await;
    }
    // QoS 0 is not queued for offline sessions (queue_qos0_messages = false).
    publ.client
        .publish("q", QoS::AtMostOnce, false, vec![99])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut sub = v4(o);
    assert!(
        sub.connack().await.session_present,
        "session present [MQTT-3.2.2-2]"
    );
    for i in 0..5u8 {
        let p = sub.publish().await;
        assert_eq!(&p.payload[..], &[i]);
    }
    sub.no_publish(Duration::from_millis(200)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn clean_session_discards_previous_session_mqtt_3_1_2_6() {
    let (broker, addr) = start().await;
    let mut o = v4_opts(addr, "c");
    o.set_clean_session(false);
    let mut a = v4(o);
    a.connack().await;
    a.client.subscribe("x", QoS::AtLeastOnce).await.unwrap();
    a.suback().await;
    a.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(T, a.task).await;
    let mut b = v4(v4_opts(addr, "c"));
    assert!(!b.connack().await.session_present);
    let mut publ = v4(v4_opts(addr, "p"));
    publ.connack().await;
    publ.client
        .publish("x", QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();
    b.no_publish(Duration::from_millis(300)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_published_on_abnormal_disconnect_not_after_disconnect_mqtt_3_1_2_8() {
    let (broker, addr) = start().await;
    let mut watcher = v4(v4_opts(addr, "w"));
    watcher.connack().await;
    watcher
        .client
        .subscribe("wills/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    watcher.suback().await;

    let mut o = v4_opts(addr, "dies");
    o.set_last_will(LastWill::new("wills/dies", "gone", QoS::AtLeastOnce, false));
    let mut dies = v4(o);
    dies.connack().await;
    dies.kill();
    let p = watcher.publish().await;
    assert_eq!(p.topic, "wills/dies");
    assert_eq!(&p.payload[..], b"gone");

    let mut o = v4_opts(addr, "polite");
    o.set_last_will(LastWill::new(
        "wills/polite",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let mut polite = v4(o);
    polite.connack().await;
    polite.client.disconnect().await.unwrap();
    watcher.no_publish(Duration::from_millis(300)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_balances_and_delivers_each_message_once_v311() {
    let (broker, addr) = start().await;
    let mut a = v4(v4_opts(addr, "a"));
    let mut b = v4(v4_opts(addr, "b"));
    a.connack().await;
    b.connack().await;
    a.client
        .subscribe("$share/g/jobs/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    b.client
        .subscribe("$share/g/jobs/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    a.suback().await;
    b.suback().await;
    let mut publ = v4(v4_opts(addr, "p"));
    publ.connack().await;
    for i in 0..10u8 {
        publ.client
            .publish("jobs/x", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(a.publish().await.payload[0]);
        got.push(b.publish().await.payload[0]);
    }
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    a.no_publish(Duration::from_millis(100)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_offline_member_message_is_queued_not_lost() {
    let (broker, addr) = start().await;
    let mut o = v4_opts(addr, "solo");
    o.set_clean_session(false);
    let mut a = v4(o.clone());
    a.connack().await;
    a.client
        .subscribe("$share/g/work", QoS::AtLeastOnce)
        .await
        .unwrap();
    a.suback().await;
    a.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(T, a.task).await;
    let mut publ = v4(v4_opts(addr, "p"));
    publ.connack().await;
    publ.client
        .publish("work", QoS::AtLeastOnce, false, "job")
        .await
        .unwrap();
    publ.acked().await;
    let mut a = v4(o);
    assert!(a.connack().await.session_present);
    assert_eq!(&a.publish().await.payload[..], b"job");
    broker.shutdown().await;
}

#[tokio::test]
async fn takeover_closes_old_connection_mqtt_3_1_4_3() {
    let (broker, addr) = start().await;
    let mut first = v4(v4_opts(addr, "same"));
    first.connack().await;
    let mut second = v4(v4_opts(addr, "same"));
    second.connack().await;
    // The first event loop sees its connection closed.
    loop {
        match tokio::time::timeout(T, first.rx.recv()).await.unwrap() {
            Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    broker.shutdown().await;
}
