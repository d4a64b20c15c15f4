"""The seed's stack done well, as bench/api.sh's peer: FastAPI + Pydantic +
asyncpg, run by uvicorn (uvloop, httptools) with two workers; prepared
statements on a pool; HS256 JWTs verified per request, with verified tokens
cached for an hour. It answers the same two requests as PostgREST does in the
benchmark, from the same view (api.customer_360):

    GET /customer_360?golden_id=eq.<id>        one record (404 when absent)
    GET /customer_360?ltv_segment=eq.<s>&order=total_spend.desc,golden_id&limit=50&offset=<n>
"""

import datetime
import os
import time
from decimal import Decimal
from typing import Optional

import asyncpg
import jwt
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

SECRET = os.environ["PEER_JWT_SECRET"]
DSN = os.environ["PEER_DSN"]
COLUMNS = (
    "golden_id, customer_unique_id, customer_id, customer_ids, order_count, canceled_order_count, total_spend, "
    "avg_order_value, max_single_order, first_order_date, last_order_date, total_items, unique_products, "
    "favorite_category, product_diversity, avg_review_score, total_reviews, ltv_segment, recency_score, "
    "frequency_score, monetary_score, rfm_segment, geographic_state, geographic_city, geographic_zip, latitude, "
    "longitude, refreshed_at, days_since_last_order"
)
LOOKUP = f"SELECT {COLUMNS} FROM api.customer_360 WHERE golden_id = $1"
SEGMENT = f"SELECT {COLUMNS} FROM api.customer_360 WHERE ltv_segment = $1 ORDER BY total_spend DESC, golden_id LIMIT $2 OFFSET $3"


class Customer(BaseModel):
    golden_id: str
    customer_unique_id: str
    customer_id: str
    customer_ids: list[str]
    order_count: int
    canceled_order_count: int
    total_spend: Decimal
    avg_order_value: Decimal
    max_single_order: Decimal
    first_order_date: Optional[datetime.date]
    last_order_date: Optional[datetime.date]
    total_items: int
    unique_products: int
    favorite_category: Optional[str]
    product_diversity: Decimal
    avg_review_score: Optional[Decimal]
    total_reviews: int
    ltv_segment: str
    recency_score: Optional[int]
    frequency_score: Optional[int]
    monetary_score: Optional[int]
    rfm_segment: Optional[str]
    geographic_state: Optional[str]
    geographic_city: Optional[str]
    geographic_zip: Optional[int]
    latitude: Optional[float]
    longitude: Optional[float]
    refreshed_at: datetime.datetime
    days_since_last_order: Optional[int]


app = FastAPI()
verified: dict[str, float] = {}


def authorize(request: Request) -> None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise HTTPException(status_code=401)
    token = header[7:]
    now = time.time()
    if verified.get(token, 0) > now:
        return
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(status_code=401)
    if claims.get("role") != "golden360_reader":
        raise HTTPException(status_code=403)
    verified[token] = min(now + 3600, claims.get("exp", now + 3600))


@app.on_event("startup")
async def startup() -> None:
    # Statements are prepared once per connection, then reused (asyncpg's cache).
    app.state.pool = await asyncpg.create_pool(DSN, min_size=4, max_size=8)


@app.get("/customer_360")
async def customer_360(request: Request):
    authorize(request)
    q = request.query_params
    async with app.state.pool.acquire() as c:
        if "golden_id" in q:
            row = await c.fetchrow(LOOKUP, q["golden_id"].removeprefix("eq."))
            if row is None:
                raise HTTPException(status_code=404)
            return Customer(**row)
        rows = await c.fetch(SEGMENT, q["ltv_segment"].removeprefix("eq."), int(q.get("limit", 50)), int(q.get("offset", 0)))
        return [Customer(**r) for r in rows]
