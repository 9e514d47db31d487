//! MQTT 5.0 behaviour end to end, with rumqttc's v5 client against a broker on an ephemeral port.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, DisconnectReasonCode, Filter, LastWill, LastWillProperties,
    PublishProperties, SubscribeProperties, SubscribeReasonCode,
};
use std::time::Duration;

#[tokio::test]
async fn connack_properties_and_assigned_client_id_mqtt_3_2_2_16() {
    let (broker, addr) = start().await;
    let mut c = v5(v5_opts(addr, ""));
    let ack = c.connack().await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let p = ack.properties.expect("CONNACK properties");
    assert!(
        p.assigned_client_identifier
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(p.receive_max, Some(100));
    assert_eq!(p.max_packet_size, Some(1_048_576));
    assert_eq!(p.topic_alias_max, Some(10));
    assert_eq!(p.shared_subscription_available, Some(1));
    broker.shutdown().await;
}

#[tokio::test]
async fn qos_0_1_2_with_properties_passed_through() {
    let (broker, addr) = start().await;
    let mut sub = v5(v5_opts(addr, "sub"));
    sub.connack().await;
    sub.client.subscribe("t/+", QoS::ExactlyOnce).await.unwrap();
    sub.suback().await;
    let mut publ = v5(v5_opts(addr, "pub"));
    publ.connack().await;
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let props = PublishProperties {
            payload_format_indicator: Some(1),
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        publ.client
            .publish_with_properties("t/x", q, false, "hi", props)
            .await
            .unwrap();
        let p = sub.publish().await;
        assert_eq!(p.qos, q);
        let props = p.properties.expect("properties forwarded");
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
        assert_eq!(props.response_topic.as_deref(), Some("reply/here"));
        assert_eq!(props.correlation_data.as_deref(), Some(&b"corr"[..]));
        assert_eq!(props.user_properties, [("k".to_string(), "v".to_string())]);
        assert_eq!(props.payload_format_indicator, Some(1));
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn overlapping_subscriptions_one_copy_with_all_ids_mqtt_3_3_4_3() {
    let (broker, addr) = start().await;
    let mut sub = v5(v5_opts(addr, "sub"));
    sub.connack().await;
    for (f, id, q) in [("o/#", 1, QoS::AtMostOnce), ("o/+", 2, QoS::AtLeastOnce)] {
        sub.client
            .subscribe_with_properties(
                f,
                q,
                SubscribeProperties {
                    id: Some(id),
                    user_properties: vec![],
                },
            )
            .await
            .unwrap();
        sub.suback().await;
    }
    let mut publ = v5(v5_opts(addr, "pub"));
    publ.connack().await;
    publ.client
        .publish("o/x", QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();
    let p = sub.publish().await;
    assert_eq!(
        p.qos,
        QoS::AtLeastOnce,
        "highest granted QoS [MQTT-3.3.4-2]"
    );
    let mut ids = p.properties.unwrap().subscription_identifiers;
    ids.sort();
    assert_eq!(ids, [1, 2]);
    sub.no_publish(Duration::from_millis(200)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn no_local_and_retain_as_published_mqtt_3_8_3_3() {
    let (broker, addr) = start().await;
    let mut c = v5(v5_opts(addr, "self"));
    c.connack().await;
    let mut f = Filter::new("nl", QoS::AtLeastOnce);
    f.nolocal = true;
    c.client.subscribe_many([f]).await.unwrap();
    c.suback().await;
    let mut f = Filter::new("rap", QoS::AtLeastOnce);
    f.preserve_retain = true;
    c.client.subscribe_many([f]).await.unwrap();
    c.suback().await;
    c.client
        .publish("nl", QoS::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    c.client
        .publish("rap", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    let p = c.publish().await;
    assert_eq!(p.topic, "rap");
    assert!(p.retain, "Retain As Published keeps RETAIN [MQTT-3.3.1-12]");
    c.no_publish(Duration::from_millis(200)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn retain_handling_2_sends_no_retained_on_subscribe() {
    let (broker, addr) = start().await;
    let mut publ = v5(v5_opts(addr, "pub"));
    publ.connack().await;
    publ.client
        .publish("rh", QoS::AtLeastOnce, true, "r")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = v5(v5_opts(addr, "sub"));
    c.connack().await;
    let mut f = Filter::new("rh", QoS::AtLeastOnce);
    f.retain_forward_rule = rumqttc::v5::mqttbytes::v5::RetainForwardRule::Never;
    c.client.subscribe_many([f]).await.unwrap();
    c.suback().await;
    c.no_publish(Duration::from_millis(200)).await;
    c.client.subscribe("rh", QoS::AtLeastOnce).await.unwrap();
    assert!(c.publish().await.retain);
    broker.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_reason_codes_per_filter_v5() {
    let (broker, addr) = start().await;
    let mut c = v5(v5_opts(addr, "u"));
    c.connack().await;
    c.client.subscribe("a", QoS::AtMostOnce).await.unwrap();
    c.suback().await;
    c.client.unsubscribe("a").await.unwrap();
    c.client.unsubscribe("never").await.unwrap();
    use rumqttc::v5::mqttbytes::v5::{Packet, UnsubAckReason};
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        if let Ok(Packet::UnsubAck(u)) = c.next_incoming().await {
            reasons.extend(u.reasons);
        }
    }
    assert_eq!(
        reasons,
        [
            UnsubAckReason::Success,
            UnsubAckReason::NoSubscriptionExisted
        ]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn session_expiry_keeps_session_then_discards_it() {
    let (broker, addr) = start().await;
    let mut o = v5_opts(addr, "exp");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(1));
    let mut c = v5(o.clone());
    assert!(!c.connack().await.session_present);
    c.client.subscribe("e", QoS::AtLeastOnce).await.unwrap();
    c.suback().await;
    c.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(T, c.task).await;
    let mut publ = v5(v5_opts(addr, "pub"));
    publ.connack().await;
    publ.client
        .publish("e", QoS::AtLeastOnce, false, "queued")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = v5(o.clone());
    assert!(c.connack().await.session_present);
    assert_eq!(&c.publish().await.payload[..], b"queued");
    c.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(T, c.task).await;
    // Expiry is 1 s; the sweeper runs every second.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let mut c = v5(o);
    assert!(
        !c.connack().await.session_present,
        "expired session is gone"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn takeover_sends_disconnect_0x8e_to_old_client_mqtt_3_1_4_3() {
    let (broker, addr) = start().await;
    let mut first = v5(v5_opts(addr, "twin"));
    first.connack().await;
    let mut second = v5(v5_opts(addr, "twin"));
    second.connack().await;
    let d = first.disconnect_reason().await;
    assert!(
        d.contains(&format!("{:?}", DisconnectReasonCode::SessionTakenOver)),
        "{d}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_disconnect_0x8b() {
    let (broker, addr) = start().await;
    let mut c = v5(v5_opts(addr, "c"));
    c.connack().await;
    let shutdown = tokio::spawn(broker.shutdown());
    let d = c.disconnect_reason().await;
    assert!(
        d.contains(&format!("{:?}", DisconnectReasonCode::ServerShuttingDown)),
        "{d}"
    );
    tokio::time::timeout(T, shutdown).await.unwrap().unwrap();
}

#[tokio::test]
async fn will_delay_interval_and_will_properties_mqtt_3_1_3_9() {
    let (broker, addr) = start().await;
    let mut w = v5(v5_opts(addr, "watch"));
    w.connack().await;
    w.client
        .subscribe("will/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    w.suback().await;

    let mut o = v5_opts(addr, "delayed");
    o.set_session_expiry_interval(Some(60));
    o.set_last_will(LastWill::new(
        "will/delayed",
        "bye",
        QoS::AtLeastOnce,
        false,
        Some(LastWillProperties {
            delay_interval: Some(1),
            content_type: Some("text/plain".into()),
            user_properties: vec![("why".into(), "test".into())],
            payload_format_indicator: None,
            message_expiry_interval: None,
            response_topic: None,
            correlation_data: None,
        }),
    ));
    let mut d = v5(o);
    d.connack().await;
    let start = std::time::Instant::now();
    d.kill();
    w.no_publish(Duration::from_millis(600)).await;
    let p = w.publish().await;
    assert!(start.elapsed() >= Duration::from_millis(900));
    let props = p.properties.unwrap();
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        props.user_properties,
        [("why".to_string(), "test".to_string())]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn will_with_delay_not_sent_if_client_reconnects_in_time() {
    let (broker, addr) = start().await;
    let mut w = v5(v5_opts(addr, "watch"));
    w.connack().await;
    w.client
        .subscribe("will/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    w.suback().await;
    let mut o = v5_opts(addr, "back");
    o.set_session_expiry_interval(Some(60));
    o.set_clean_start(false);
    let mut with_will = o.clone();
    with_will.set_last_will(LastWill::new(
        "will/back",
        "bye",
        QoS::AtLeastOnce,
        false,
        Some(LastWillProperties {
            delay_interval: Some(1),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
        }),
    ));
    let mut d = v5(with_will);
    d.connack().await;
    d.kill();
    let mut again = v5(o);
    again.connack().await;
    w.no_publish(Duration::from_millis(1500)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_v5_balanced() {
    let (broker, addr) = start().await;
    let mut a = v5(v5_opts(addr, "a"));
    let mut b = v5(v5_opts(addr, "b"));
    a.connack().await;
    b.connack().await;
    a.client
        .subscribe("$share/g/s", QoS::AtLeastOnce)
        .await
        .unwrap();
    b.client
        .subscribe("$share/g/s", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        a.suback().await.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    b.suback().await;
    let mut p = v5(v5_opts(addr, "p"));
    p.connack().await;
    for i in 0..4u8 {
        p.client
            .publish("s", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut got = vec![a.publish().await.payload[0], a.publish().await.payload[0]];
    got.push(b.publish().await.payload[0]);
    got.push(b.publish().await.payload[0]);
    got.sort();
    assert_eq!(got, [0, 1, 2, 3]);
    broker.shutdown().await;
}

#[tokio::test]
async fn message_expiry_drops_queued_message_mqtt_3_3_2_5() {
    let (broker, addr) = start().await;
    let mut o = v5_opts(addr, "slow");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(60));
    let mut c = v5(o.clone());
    c.connack().await;
    c.client.subscribe("x", QoS::AtLeastOnce).await.unwrap();
    c.suback().await;
    c.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(T, c.task).await;
    let mut p = v5(v5_opts(addr, "p"));
    p.connack().await;
    let short = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    let long = PublishProperties {
        message_expiry_interval: Some(100),
        ..Default::default()
    };
    p.client
        .publish_with_properties("x", QoS::AtLeastOnce, false, "short", short)
        .await
        .unwrap();
    p.client
        .publish_with_properties("x", QoS::AtLeastOnce, false, "long", long)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut c = v5(o);
    c.connack().await;
    let m = c.publish().await;
    assert_eq!(&m.payload[..], b"long");
    let left = m.properties.unwrap().message_expiry_interval.unwrap();
    assert!(
        (98..100).contains(&left),
        "expiry decremented [MQTT-3.3.2-6]: {left}"
    );
    c.no_publish(Duration::from_millis(200)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn maximum_packet_size_of_client_respected_mqtt_3_1_2_24() {
    let (broker, addr) = start().await;
    let mut o = v5_opts(addr, "small");
    o.set_max_packet_size(Some(128));
    let mut c = v5(o);
    c.connack().await;
    c.client.subscribe("m", QoS::AtMostOnce).await.unwrap();
    c.suback().await;
    let mut p = v5(v5_opts(addr, "p"));
    p.connack().await;
    p.client
        .publish("m", QoS::AtMostOnce, false, vec![0u8; 500])
        .await
        .unwrap();
    p.client
        .publish("m", QoS::AtMostOnce, false, "small")
        .await
        .unwrap();
    assert_eq!(&c.publish().await.payload[..], b"small");
    broker.shutdown().await;
}
