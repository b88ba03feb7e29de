"""Rep lines for every shipped scenario: a strong rep and a weak one, written as reps actually talk.

The strong lines follow the scripted buyer's beats, so replayed against ScriptedBuyer they read as a call.
"""

TRANSCRIPTS: dict[str, dict[str, list[str]]] = {
    "discovery-impact": {
        "strong": [
            "Late nights at close are no fun. Walk me through what the last week of the month actually "
            "looks like for your team.",
            "Eight days against a target of five. How many invoices go through in a typical month, and how "
            "long do they usually sit with the branch managers?",
            "That's a lot of waiting. When an invoice sits at a branch for a week, what does that end up "
            "costing you? Late fees, early-pay discounts, anything like that?",
            "Let me add that up. Three clerks at maybe 20 extra hours each at close is 60 hours a month, "
            "plus about $38,000 a quarter in missed discounts, so you're north of $150,000 a year before "
            "we count the audit findings. Does that sound about right?",
            "What happens if you lose another clerk before the next close? And who else feels this, does "
            "your CFO see these numbers?",
            "It sounds like the real cost is the discounts and the risk of losing your team, not the late "
            "nights. Could we get time with you and your CFO next Tuesday to walk through these numbers? "
            "I'll send the invite today.",
        ],
        "weak": [
            "Totally get it, month-end is tough for everyone. Our platform automates the whole AP process "
            "end-to-end with AI-powered invoice capture.",
            "We also have mobile approvals so your branch managers can approve from their phones, plus "
            "seamless integrations with all the major ERPs.",
            "Does that sound like something that would help?",
            "Great. I'll send you some information, and maybe we can set up a demo sometime.",
        ],
    },
    "price-objection": {
        "strong": [
            "That's fair, it's a real jump from 128, and I'd rather you push on it now than have your CFO "
            "do it later. When you say closer to 130, what's that number being compared against?",
            "I understand, cutting every software line is a hard room to walk into. What does the current "
            "tool actually cover today, routing only or load matching as well?",
            "Here's how I'd look at it. Deadhead cost you about $2.1M last year, and the pilot cut empty "
            "miles on the Chicago lanes by about 8%. Across the network that's roughly $170,000 a year, "
            "which covers the $58,000 gap about three times over.",
            "So I'm not going to discount the 186, because the price reflects the load matching that "
            "drives those savings. If timing is the issue, we could phase in the two smaller terminals "
            "next year. What would your CFO need to see on one page to be comfortable defending it?",
            "Let's do this: I'll send over the deadhead math on one page by Wednesday, and could I join "
            "you for the CFO's Thursday review to answer questions?",
        ],
        "weak": [
            "Yeah, I totally get it. Budgets are tight everywhere this year. Let me see what I can do.",
            "Our platform is best-in-class for route optimisation and we offer load matching, real-time "
            "tracking and a driver app, so there's a lot more in there than your current tool.",
            "Okay, if I could knock 15% off, would that get it done?",
            "I can probably get you to 150 if you sign by the end of the month.",
        ],
    },
    "competitor-objection": {
        "strong": [
            "DocuStream is a solid company, and it makes sense to look at them. Before I compare anything, "
            "what matters most to you in this decision?",
            "Thirty percent is a lot of re-keying. Besides adjuster time, what else weighs on this decision?",
            "Got it. Our extraction was built for handwritten repair estimates. Harbor State, another "
            "regional carrier, went from 28% of documents corrected by hand to under 6% in their first "
            "quarter, and I can put you on the phone with their claims ops lead.",
            "On Guidewire, we've done that integration at four carriers on a fixed-scope plan, so you "
            "wouldn't be repeating last year. How will the committee weigh integration risk against "
            "adjuster time when it comes to the final call?",
            "Then let's prove it on your own files rather than argue about it. If you send 500 real claim "
            "files, handwritten estimates included, we'll run them and show the accuracy side by side. "
            "Could we book an hour with you and your CIO on Thursday the 12th to review the results before "
            "the committee meets?",
        ],
        "weak": [
            "Honestly, DocuStream is cheap for a reason. Their extraction is pretty outdated and we hear a "
            "lot of people find it clunky.",
            "Our platform is best-in-class, with AI-powered extraction, seamless Guidewire integration and "
            "a modern interface your adjusters will love.",
            "And on price, I'm sure we can get closer to their number if that's what it takes.",
            "Do you want me to send over a comparison sheet?",
        ],
    },
    "multithread-champion": {
        "strong": [
            "That makes sense, and I want this to land as your recommendation. When Elaine looks at a "
            "project like this, what does she usually push on?",
            "That's rough after all the work you put in. Walk me through what happens after Elaine says "
            "yes: who else touches it before it's signed?",
            "So with legal at about three weeks and a freeze from August first, the real deadline is "
            "mid-July. It sounds like this has to be in front of Elaine in the next couple of weeks, not "
            "after pricing.",
            "Then let's make it your recommendation. What if we went in together: you frame the problem, "
            "and I'm there to field the numbers questions she asked last time?",
            "Could you get 30 minutes on Elaine's calendar next week, with you leading and me backing you "
            "up on the ROI? I'll send you a one-page brief on Monday that you can walk her through first.",
        ],
        "weak": [
            "Sounds good, you know Elaine best. I'll get the pricing finalized this week.",
            "Our platform is also really strong on labor planning, so you might want to mention that to her.",
            "I'll send you the deck and the pricing so you can forward it to her.",
            "Just let me know what she says.",
        ],
    },
    "stall-think-about-it": {
        "strong": [
            "Of course, no pressure, it's a real decision. Usually when someone wants to think it over "
            "there's one piece that isn't sitting right. What's the part you're still unsure about?",
            "That makes sense, it's his practice. What would Dr. Hale need to see to feel good about it?",
            "It sounds like the real questions are Dr. Hale and the July upgrade, not the product. Right?",
            "On the upgrade, we could start training after your EHR go-live, so the front desk only learns "
            "one system at a time. Meanwhile denials are running about $22,000 a month, so whether waiting "
            "is worth it is your call.",
            "Would it help if I joined you and Dr. Hale on Tuesday at noon, with the denial numbers on one "
            "page? I'll send a calendar invite with a short agenda.",
        ],
        "weak": [
            "Totally understand. Take all the time you need.",
            "Just so you know, this pricing is only good through the end of the quarter, so I'd hate for "
            "you to miss it.",
            "I could also throw in an extra month free if that helps you decide.",
            "Okay, no problem. I'll check back in a couple of weeks.",
        ],
    },
    "status-quo-spreadsheets": {
        "strong": [
            "Six years is a good run, and if it works I'm not here to talk you out of it. Out of "
            "curiosity, where does it give you the most trouble, if anywhere?",
            "That makes sense, she built it. What's the plan for the workbook when Linda isn't around?",
            "If rebuilding the schedule by hand takes someone eight or ten hours a week when she's out, "
            "what happens after October when she's out for good?",
            "Three fines at $4,500 is $13,500 last year, and that's with Linda still there. It sounds like "
            "the spreadsheet isn't the risk, it's that one person holds it together.",
            "Would it make sense to sit down with you and Linda next Wednesday, before she's gone, and map "
            "what the macros actually do? No commitment beyond that.",
        ],
        "weak": [
            "Spreadsheets are fine for a small shop, but at 2,300 units you're honestly outgrowing them. "
            "They're error-prone and they don't scale.",
            "Our platform gives you automated scheduling, a tenant portal, vendor management and mobile "
            "work orders, all in one place, and it's really easy to use.",
            "Plus we're running a promotion this quarter, so I can discount the first year by 20%.",
            "Do you want me to send over a quick demo video?",
        ],
    },
    "active-listening": {
        "strong": [
            "That's a big drop, and I'm guessing the board wants answers. What's behind the churn?",
            "So what I'm hearing is the health score told you nothing. What did your team see in those "
            "accounts that the score missed?",
            "That's a heavy thing to carry. How are your CSMs building the score today?",
            "So forty people spend Friday afternoons on a number nobody trusts, while the CRO looks at "
            "your team. Did I get that right?",
            "If the score flagged risk early, what would that change for you with the CRO?",
            "Would it help to spend thirty minutes Thursday with you and two of your team leads, so I can "
            "hear how the CSMs work before showing anything?",
        ],
        "weak": [
            "Thanks Nadia, that's exactly why I reached out. So a little about us: we're a customer health "
            "platform that pulls product usage, support tickets, NPS and billing data into one score, and "
            "we use machine learning to predict churn up to 90 days out. We work with over 200 SaaS "
            "companies, and most of them see a 5 to 8 point lift in gross retention within the first year. "
            "We also have playbooks that trigger automatically when an account turns red, so your CSMs "
            "always know what to do next.",
            "And the nice thing is it's really fast to stand up. Our platform connects to Salesforce, "
            "Zendesk and most data warehouses out of the box, so you're not waiting on engineering, and we "
            "offer a dedicated onboarding team for the first 90 days. Most customers are live in about six "
            "weeks, and we'd build your health score model together with your team so they trust it.",
            "Does that sound like something that would help?",
            "Great, I'll send over a deck and some case studies.",
        ],
    },
}
