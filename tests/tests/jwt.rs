//! `JwtIdentity` (feature `jwt`): a host's JWT bearer tokens as the chat's identity, over REST
//! and the WebSocket, with every algorithm it verifies (test keys in `tests/fixtures/jwt/`),
//! the tokens it refuses, its coexistence with the chat's own tokens, and the demo's flags.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chat_tower::{
    identity::{JwtAlgorithm, JwtIdentity, JwtKeyError},
    ChatBuilder,
};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use roomcast_tests::{demo_server_bin, Client, DemoProcess, Server};
use serde_json::{json, Value};

const SECRET: &[u8] = b"the identity provider's test secret, 32+ bytes long";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/jwt")
            .join(name),
    )
    .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims for user `sub` named `name`, valid for five minutes.
fn claims(sub: &str, name: &str) -> Value {
    json!({ "sub": sub, "name": name, "exp": now() + 300 })
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET).unwrap(),
        claims,
    )
}

/// A chat whose identity is `identity` (its `api` is anonymous: there are no guests).
async fn start(identity: JwtIdentity) -> Server {
    Server::start(ChatBuilder::new().identity(identity)).await
}

/// Asserts `token` is refused with 401, on REST and on the WebSocket (header and query), and
/// that the refusal does not echo it.
async fn assert_refused(server: &Server, token: &str, what: &str) {
    let api = server.api.with_token(token);
    let (status, problem) = api.get("/rooms").await;
    assert_eq!(status, 401, "{what}: {problem}");
    assert_eq!(problem["code"], "unauthorized", "{what}: {problem}");
    assert!(
        !problem.to_string().contains(token),
        "{what}: the token is echoed: {problem}"
    );
    let query = Client::try_connect(server.addr, &format!("/ws?token={token}"), &[]).await;
    assert_eq!(query.err(), Some(401), "{what}: WebSocket ?token=");
    let bearer = format!("Bearer {token}");
    let header = Client::try_connect(server.addr, "/ws", &[("authorization", &bearer)]).await;
    assert_eq!(header.err(), Some(401), "{what}: WebSocket Authorization");
}

#[tokio::test]
async fn hs256_token_works_on_rest_and_websocket_with_the_claimed_name() {
    let server = start(JwtIdentity::hs256(SECRET).unwrap()).await;
    let ann_jwt = hs256(&claims("u-ann", "Ann"));
    let ann = server.api.with_token(&ann_jwt);
    let room = ann.create_room("jwt room").await;
    let (status, joined) = ann.post(&format!("/join-room/{room}"), None).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["user"], json!({"id": "u-ann", "name": "Ann"}));

    // Bo has no name claim: his name is his `sub`.
    let bo_jwt = hs256(&json!({ "sub": "u-bo", "exp": now() + 300 }));
    let bo = server.api.with_token(&bo_jwt);
    let (status, joined) = bo.post(&format!("/join-room/{room}"), None).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["user"], json!({"id": "u-bo", "name": "u-bo"}));

    // The WebSocket takes the JWT as `Authorization: Bearer` and as `?token=`.
    let bearer = format!("Bearer {ann_jwt}");
    let mut ann_ws = Client::try_connect(server.addr, "/ws", &[("authorization", &bearer)])
        .await
        .unwrap();
    ann_ws.join(&room).await;
    let mut bo_ws = Client::connect(server.addr, &format!("/ws?token={bo_jwt}")).await;
    bo_ws.join(&room).await;
    ann_ws.say(&room, "hello from a JWT").await;
    let message = bo_ws.drain_until("message").await;
    assert_eq!(message["from"], json!({"id": "u-ann", "name": "Ann"}));
    assert_eq!(message["body"], "hello from a JWT");

    let (status, members) = ann.get(&format!("/rooms/{room}/members")).await;
    assert_eq!(status, 200, "{members}");
    let names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Ann") && names.contains(&"u-bo"),
        "{members}"
    );
}

#[tokio::test]
async fn the_name_claim_is_configurable_and_bad_names_fall_back_to_sub() {
    let identity = JwtIdentity::hs256(SECRET)
        .unwrap()
        .name_claim("preferred_username");
    let server = start(identity).await;
    let token = hs256(&json!({
        "sub": "u-cy", "name": "not this", "preferred_username": "  Cy  ", "exp": now() + 300,
    }));
    let room = server.api.with_token(&token).create_room("r").await;
    let (_, joined) = server
        .api
        .with_token(&token)
        .post(&format!("/join-room/{room}"), None)
        .await;
    assert_eq!(joined["user"], json!({"id": "u-cy", "name": "Cy"}));
    // A name with a bidi override is not shown: the user is named by `sub`.
    let token = hs256(&json!({
        "sub": "u-dee", "preferred_username": "evil\u{202E}gpj.exe", "exp": now() + 300,
    }));
    let (_, joined) = server
        .api
        .with_token(&token)
        .post(&format!("/join-room/{room}"), None)
        .await;
    assert_eq!(joined["user"], json!({"id": "u-dee", "name": "u-dee"}));
}

#[tokio::test]
async fn forged_unsigned_expired_and_incomplete_tokens_are_401() {
    let server = start(JwtIdentity::hs256(SECRET).unwrap()).await;
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let valid = claims("u-ann", "Ann");
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid)
    );
    // `alg: none` with a signature segment anyway (some parsers only check the header).
    let hs = hs256(&valid);
    let sig = hs.rsplit('.').next().unwrap();
    let alg_none_signed = format!(
        "{}.{}.{sig}",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid)
    );
    let wrong_key = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"somebody else's secret").unwrap(),
        &valid,
    );
    // HS384 with the right secret: the algorithm is the key's, not the token's.
    let other_alg = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET).unwrap(),
        &valid,
    );
    let no_exp = hs256(&json!({"sub": "u-ann", "name": "Ann"}));
    let no_sub = hs256(&json!({"name": "Ann", "exp": now() + 300}));
    let empty_sub = hs256(&json!({"sub": "", "exp": now() + 300}));
    let expired = hs256(&json!({"sub": "u-ann", "exp": now() - 120}));
    let not_yet = hs256(&json!({"sub": "u-ann", "exp": now() + 600, "nbf": now() + 300}));
    let tampered = {
        let mut parts: Vec<&str> = hs.split('.').collect();
        let evil = b64(&claims("u-admin", "Admin"));
        parts[1] = &evil;
        parts.join(".")
    };
    for (what, token) in [
        ("alg none", alg_none),
        ("alg none, signed", alg_none_signed),
        ("wrong key", wrong_key),
        ("another algorithm", other_alg),
        ("no exp", no_exp),
        ("no sub", no_sub),
        ("empty sub", empty_sub),
        ("expired beyond the leeway", expired),
        ("not valid yet", not_yet),
        ("tampered claims", tampered),
    ] {
        assert_refused(&server, &token, what).await;
    }
    // Within the leeway (30 s by default), an expired token still passes.
    let just_expired = hs256(&json!({"sub": "u-ann", "exp": now() - 5}));
    assert_eq!(
        server.api.with_token(&just_expired).get("/rooms").await.0,
        200
    );
    // A leeway of zero refuses it.
    let strict = start(JwtIdentity::hs256(SECRET).unwrap().leeway(Duration::ZERO)).await;
    assert_refused(&strict, &just_expired, "expired, no leeway").await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let identity = JwtIdentity::hs256(SECRET)
        .unwrap()
        .issuer("https://idp.test")
        .audience("chat");
    let server = start(identity).await;
    let with = |extra: Value| {
        let mut c = claims("u-ann", "Ann");
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        hs256(&c)
    };
    let good = with(json!({"iss": "https://idp.test", "aud": "chat"}));
    assert_eq!(server.api.with_token(&good).get("/rooms").await.0, 200);
    let among = with(json!({"iss": "https://idp.test", "aud": ["billing", "chat"]}));
    assert_eq!(server.api.with_token(&among).get("/rooms").await.0, 200);
    for (what, extra) in [
        (
            "wrong iss",
            json!({"iss": "https://evil.test", "aud": "chat"}),
        ),
        (
            "wrong aud",
            json!({"iss": "https://idp.test", "aud": "billing"}),
        ),
        ("no iss", json!({"aud": "chat"})),
        ("no aud", json!({"iss": "https://idp.test"})),
    ] {
        assert_refused(&server, &with(extra), what).await;
    }
    // Without an audience configured, a token's `aud` does not matter.
    let lenient = start(JwtIdentity::hs256(SECRET).unwrap()).await;
    let any_aud = with(json!({"aud": "whatever"}));
    assert_eq!(lenient.api.with_token(&any_aud).get("/rooms").await.0, 200);
}

#[tokio::test]
async fn rs256_es256_and_eddsa_verify_with_their_public_keys() {
    let cases = [
        (JwtAlgorithm::Rs256, Algorithm::RS256, "rs256"),
        (JwtAlgorithm::Es256, Algorithm::ES256, "es256"),
        (JwtAlgorithm::EdDsa, Algorithm::EdDSA, "eddsa"),
    ];
    for (ours, alg, name) in cases {
        let public = fixture(&format!("{name}-public.pem"));
        let private = fixture(&format!("{name}-private.pem"));
        let identity = JwtIdentity::from_public_key_pem(&public).unwrap();
        assert_eq!(identity.algorithm(), ours, "{name}: the key picks it");
        let server = start(identity).await;
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
            _ => EncodingKey::from_ed_pem(&private),
        }
        .unwrap();
        let token = sign(alg, &key, &claims(&format!("u-{name}"), name));
        let api = server.api.with_token(&token);
        let room = api.create_room(name).await;
        let (status, joined) = api.post(&format!("/join-room/{room}"), None).await;
        assert_eq!(status, 200, "{name}: {joined}");
        assert_eq!(joined["user"]["name"], name);
        let mut ws = Client::connect(server.addr, &format!("/ws?token={token}")).await;
        ws.join(&room).await;

        // Algorithm confusion: HS256 "signed" with the public key as the secret.
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&public).unwrap(),
            &claims("u-admin", "Admin"),
        );
        assert_refused(
            &server,
            &confused,
            &format!("{name}: HS256 with its public key"),
        )
        .await;
        // Another key of the same type (the HS256 test secret signs nothing here either).
        assert_refused(
            &server,
            &hs256(&claims("u-x", "x")),
            &format!("{name}: HS256"),
        )
        .await;

        // Named explicitly, the algorithm refuses keys of another type.
        assert!(JwtIdentity::from_public_key_pem_for(ours, &public).is_ok());
        let other = if ours == JwtAlgorithm::Rs256 {
            JwtAlgorithm::Es256
        } else {
            JwtAlgorithm::Rs256
        };
        assert!(matches!(
            JwtIdentity::from_public_key_pem_for(other, &public),
            Err(JwtKeyError::WrongKeyType(_))
        ));
        assert!(matches!(
            JwtIdentity::from_public_key_pem(&private),
            Err(JwtKeyError::PrivateKey)
        ));
    }
}

#[tokio::test]
async fn a_chat_token_from_join_room_still_works() {
    let server = start(JwtIdentity::hs256(SECRET).unwrap()).await;
    let ann = server.api.with_token(&hs256(&claims("u-ann", "Ann")));
    let room = ann.create_room("r").await;
    let (status, joined) = ann.post(&format!("/join-room/{room}"), None).await;
    assert_eq!(status, 200, "{joined}");
    let chat_token = joined["token"].as_str().unwrap();
    assert_eq!(
        chat_token.matches('.').count(),
        1,
        "the chat's own token, not a JWT"
    );
    let mut ws = Client::connect(server.addr, joined["websocketUrl"].as_str().unwrap()).await;
    ws.join(&room).await;
    // And on REST, as `Authorization: Bearer`.
    let (status, _) = server
        .api
        .with_token(chat_token)
        .get(&format!("/rooms/{room}"))
        .await;
    assert_eq!(status, 200);
    // The same user's JWT and chat token together are fine.
    let bearer = format!("Bearer {}", ann.token.as_deref().unwrap());
    let both = Client::try_connect(
        server.addr,
        &format!("/ws?token={chat_token}"),
        &[("authorization", &bearer)],
    )
    .await;
    assert!(both.is_ok());
}

#[tokio::test]
async fn the_jwt_user_beats_a_chat_token_for_another_user() {
    let server = start(JwtIdentity::hs256(SECRET).unwrap()).await;
    let ann_jwt = hs256(&claims("u-ann", "Ann"));
    let bo = server.api.with_token(&hs256(&claims("u-bo", "Bo")));
    let room = bo.create_room("r").await;
    let (_, joined) = bo.post(&format!("/join-room/{room}"), None).await;
    let bo_chat_token = joined["token"].as_str().unwrap();
    let bearer = format!("Bearer {ann_jwt}");
    let mixed = Client::try_connect(
        server.addr,
        &format!("/ws?token={bo_chat_token}"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(mixed.err(), Some(401), "Ann's JWT with Bo's chat token");
    // Two JWTs for different users.
    let bo_jwt = bo.token.as_deref().unwrap();
    let two = Client::try_connect(
        server.addr,
        &format!("/ws?token={bo_jwt}"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(two.err(), Some(401), "Ann's and Bo's JWTs");
}

#[tokio::test]
async fn no_guests_in_jwt_mode() {
    let server = start(JwtIdentity::hs256(SECRET).unwrap()).await;
    let anonymous = server.api.anonymous();
    let (status, problem) = anonymous
        .post("/guests", Some(json!({"name": "mallory"})))
        .await;
    assert_eq!(status, 404, "{problem}");
    let room = server
        .api
        .with_token(&hs256(&claims("u-ann", "Ann")))
        .create_room("r")
        .await;
    let (status, problem) = anonymous
        .post(
            &format!("/join-room/{room}"),
            Some(json!({"user": "mallory"})),
        )
        .await;
    assert_eq!(status, 401, "v1 guest join: {problem}");
}

#[tokio::test]
async fn the_demo_takes_jwt_flags() {
    let secret = std::str::from_utf8(SECRET).unwrap();
    let demo = DemoProcess::start_anonymous(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        secret,
        "--jwt-issuer",
        "https://idp.test",
        "--jwt-name-claim",
        "nick",
    ])
    .await;
    let (api, addr) = (demo.api.clone(), demo.addr);
    let (status, _) = api.post("/guests", Some(json!({"name": "x"}))).await;
    assert_eq!(status, 404, "no guests with --auth jwt");
    let token = hs256(&json!({
        "sub": "u-ann", "nick": "Annie", "iss": "https://idp.test", "exp": now() + 300,
    }));
    let ann = api.with_token(&token);
    let room = ann.create_room("demo").await;
    let (status, joined) = ann.post(&format!("/join-room/{room}"), None).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["user"], json!({"id": "u-ann", "name": "Annie"}));
    let mut ws = Client::connect(addr, &format!("/ws?token={token}")).await;
    ws.join(&room).await;
    let wrong_iss = hs256(&json!({"sub": "u-ann", "iss": "https://evil.test", "exp": now() + 300}));
    assert_eq!(api.with_token(&wrong_iss).get("/rooms").await.0, 401);

    // Bad combinations stop the demo before it listens.
    let bin = demo_server_bin();
    for (what, args) in [
        ("jwt without a key", vec!["--auth", "jwt"]),
        ("JWT flags in guest mode", vec!["--jwt-secret", secret]),
        (
            "an HS256 secret with another algorithm",
            vec![
                "--auth",
                "jwt",
                "--jwt-secret",
                secret,
                "--jwt-alg",
                "RS256",
            ],
        ),
        ("an unknown mode", vec!["--auth", "magic"]),
    ] {
        let out = std::process::Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .env_remove("AUTH")
            .env_remove("JWT_SECRET")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: should not start");
    }
}
