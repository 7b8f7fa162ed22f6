import os
import asyncio
from dotenv import load_dotenv
from patter import Patter

load_dotenv()

phone = Patter(
    twilio_sid=os.environ["TWILIO_SID"],
    twilio_token=os.environ["TWILIO_TOKEN"],
    phone_number=os.environ["PHONE_NUMBER"],
    webhook_url=os.environ["WEBHOOK_URL"],
)

agent = phone.agent(
    system_prompt="You are a helpful assistant.",
    provider="pipeline",
    stt=Patter.deepgram(api_key=os.environ["DEEPGRAM_KEY"]),
    tts=Patter.elevenlabs(api_key=os.environ["ELEVENLABS_KEY"], voice="rachel"),
)


async def handle_message(event) -> str:
    user_text = event["text"]
    # Add your own LLM logic here
    return f"I heard you say: {user_text}"


async def main():
    await phone.serve(agent, on_message=handle_message, port=8000)


asyncio.run(main())
