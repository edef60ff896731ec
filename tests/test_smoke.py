def test_login_page(client):
    r = client.get("/login")
    assert r.status_code == 200
